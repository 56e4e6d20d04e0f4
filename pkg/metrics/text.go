package metrics

import (
	"bytes"
	"fmt"
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// encode writes fams in the text exposition format with client_golang's
// encoder (expfmt, which escapes and formats values the way Prometheus
// parses them). The families go to it as client_golang's data model in the
// order given, labels and samples included: a prometheus.Registry would
// sort both and drop the families without samples, and the textfiles keep
// the order their builders chose (the GPU's labels gpu, uuid, name first).
func encode(w io.Writer, fams []Family) error {
	for _, f := range fams {
		mf := toModel(f)
		if len(mf.Metric) > 0 {
			if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
				return fmt.Errorf("metric %s: %w", f.Name, err)
			}
			continue
		}
		// expfmt refuses a family without samples; its HELP and TYPE lines
		// are those of the family with one unlabelled sample, less the
		// sample's line (the last one).
		mf.Metric = []*dto.Metric{model(mf.GetType(), Sample{})}
		var b bytes.Buffer
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			return fmt.Errorf("metric %s: %w", f.Name, err)
		}
		head := b.Bytes()[:bytes.LastIndexByte(b.Bytes()[:b.Len()-1], '\n')+1]
		if _, err := w.Write(head); err != nil {
			return err
		}
	}
	return nil
}

// toModel converts f to client_golang's data model, keeping the order of
// its samples and of their labels.
func toModel(f Family) *dto.MetricFamily {
	mf := &dto.MetricFamily{Name: new(f.Name), Type: new(modelType(f.Type))}
	if f.Help != "" {
		mf.Help = new(f.Help)
	}
	for _, s := range f.Samples {
		mf.Metric = append(mf.Metric, model(mf.GetType(), s))
	}
	return mf
}

// model is one sample in client_golang's data model, its value in the
// field of the family's type.
func model(t dto.MetricType, s Sample) *dto.Metric {
	m := &dto.Metric{}
	for _, l := range s.Labels {
		m.Label = append(m.Label, &dto.LabelPair{Name: new(l.Name), Value: new(l.Value)})
	}
	switch t {
	case dto.MetricType_GAUGE:
		m.Gauge = &dto.Gauge{Value: new(s.Value)}
	case dto.MetricType_COUNTER:
		m.Counter = &dto.Counter{Value: new(s.Value)}
	default:
		m.Untyped = &dto.Untyped{Value: new(s.Value)}
	}
	return m
}

// modelType is t in client_golang's data model; empty is untyped.
func modelType(t Type) dto.MetricType {
	switch t {
	case Gauge:
		return dto.MetricType_GAUGE
	case Counter:
		return dto.MetricType_COUNTER
	}
	return dto.MetricType_UNTYPED
}
