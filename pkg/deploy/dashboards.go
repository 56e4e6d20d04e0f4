package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// dashboardSpec is one dashboard of templates/grafana/dashboards.yaml.tmpl.
type dashboardSpec struct {
	UID    string      `yaml:"uid"`
	File   string      `yaml:"file"`
	Title  string      `yaml:"title"`
	Panels []panelSpec `yaml:"panels"`
}

// panelSpec is one panel: a time series, a stat or a logs panel.
type panelSpec struct {
	Title string `yaml:"title"`
	Type  string `yaml:"type"`
	Unit  string `yaml:"unit"`
	Max   *int   `yaml:"max"`
	Exprs []struct {
		Expr   string `yaml:"expr"`
		Legend string `yaml:"legend"`
	} `yaml:"exprs"`
}

var fileNameRE = regexp.MustCompile(`^[a-z0-9-]+\.json$`)

// dashboards renders the dashboard specs and builds Grafana's JSON, one
// file each under grafana/dashboards/.
func (d *renderData) dashboards() ([]File, error) {
	src, err := d.exec("grafana/dashboards.yaml.tmpl")
	if err != nil {
		return nil, err
	}
	var specs []dashboardSpec
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&specs); err != nil {
		return nil, fmt.Errorf("render dashboards: %w", err)
	}
	out := make([]File, 0, len(specs))
	for _, s := range specs {
		if !fileNameRE.MatchString(s.File) || s.UID == "" {
			return nil, fmt.Errorf("render dashboards: %q: bad file name or uid", s.Title)
		}
		data, err := json.MarshalIndent(grafanaDashboard(s, d.S.Name), "", "  ")
		if err != nil {
			return nil, fmt.Errorf("render dashboard %s: %w", s.File, err)
		}
		out = append(out, File{Path: "grafana/dashboards/" + s.File, Data: append(data, '\n')})
	}
	return out, nil
}

type obj = map[string]any

// grafanaDashboard builds the JSON model of a dashboard: panels two a row
// (stats four a row), every Prometheus panel on the provisioned
// "prometheus" data source, logs on "loki".
func grafanaDashboard(s dashboardSpec, project string) obj {
	panels := make([]any, 0, len(s.Panels))
	x, y, rowH := 0, 0, 0
	for i, p := range s.Panels {
		typ := p.Type
		if typ == "" {
			typ = "timeseries"
		}
		w, h := 12, 8
		switch typ {
		case "stat":
			w, h = 6, 4
		case "logs":
			w, h = 24, 10
		}
		if x+w > 24 {
			x, y, rowH = 0, y+rowH, 0
		}
		ds := obj{"type": "prometheus", "uid": "prometheus"}
		if typ == "logs" {
			ds = obj{"type": "loki", "uid": "loki"}
		}
		targets := make([]any, 0, len(p.Exprs))
		for j, e := range p.Exprs {
			t := obj{"refId": string(rune('A' + j)), "datasource": ds, "expr": e.Expr}
			if e.Legend != "" {
				t["legendFormat"] = e.Legend
			}
			targets = append(targets, t)
		}
		defaults := obj{}
		if p.Unit != "" {
			defaults["unit"] = p.Unit
		}
		if p.Max != nil {
			defaults["max"] = *p.Max
			defaults["min"] = 0
		}
		panel := obj{
			"id": i + 1, "type": typ, "title": p.Title, "datasource": ds, "targets": targets,
			"gridPos":     obj{"x": x, "y": y, "w": w, "h": h},
			"fieldConfig": obj{"defaults": defaults, "overrides": []any{}},
		}
		switch typ {
		case "timeseries":
			panel["options"] = obj{"legend": obj{"displayMode": "list", "placement": "bottom", "showLegend": true}, "tooltip": obj{"mode": "multi", "sort": "desc"}}
		case "stat":
			panel["options"] = obj{"reduceOptions": obj{"calcs": []string{"lastNotNull"}, "fields": "", "values": false}, "colorMode": "value", "graphMode": "none"}
		case "logs":
			panel["options"] = obj{"showTime": true, "wrapLogMessage": true, "sortOrder": "Descending"}
		}
		panels = append(panels, panel)
		x += w
		if h > rowH {
			rowH = h
		}
	}
	return obj{
		"uid": s.UID, "title": s.Title, "tags": []string{"fireops", project},
		"editable": false, "schemaVersion": 39, "version": 1, "timezone": "browser",
		"refresh": "1m", "time": obj{"from": "now-6h", "to": "now"},
		"templating": obj{"list": []any{}}, "annotations": obj{"list": []any{}},
		"panels": panels,
	}
}
