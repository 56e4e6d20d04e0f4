// Package metrics writes job results in the Prometheus text exposition
// format, for node-exporter's textfile collector (the standard way for cron
// jobs to publish metrics) and for the daemon's /metrics.
//
// A command builds []Family and writes them; jobs.go also holds the
// textfile names of the backup jobs and the snapshot run's families
// (pkg/runner builds verify's, rotate's and restore's). The text comes
// from client_golang's encoder (expfmt). WriteTextfile never leaves a
// half-written .prom file behind: it writes a temp file in the same
// folder, fsyncs it and renames it over the target (internal/atomicfile),
// so node-exporter reads either the old or the new file, never a torn
// one. A job's textfiles are a JobMetrics.
package metrics

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/firetech/fireops/internal/atomicfile"
)

// Type is a metric family's type, as written on its # TYPE line.
type Type string

// The metric types fireops writes.
const (
	// Gauge is a value that can go up and down (a temperature, a timestamp).
	Gauge Type = "gauge"
	// Counter is a value that only grows (errors since boot).
	Counter Type = "counter"
	// Untyped is a value of unknown kind.
	Untyped Type = "untyped"
)

// Label is one label pair of a sample. Labels are written in the order
// given, so output is deterministic.
type Label struct {
	// Name is the label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __).
	Name string
	// Value is any UTF-8 string; it is escaped on output.
	Value string
}

// Sample is one value of a family with its labels.
type Sample struct {
	// Labels are the sample's labels, in output order; nil for none.
	Labels []Label
	// Value is the sample value; NaN and ±Inf are allowed.
	Value float64
}

// Family is one metric with its help text, type and samples.
type Family struct {
	// Name is the metric name ([a-zA-Z_:][a-zA-Z0-9_:]*).
	Name string
	// Help is the one-line description on the # HELP line.
	Help string
	// Type is gauge, counter or untyped; empty means untyped.
	Type Type
	// Samples are the family's values. Two samples with the same label set
	// are an error. A family without samples is written with its HELP and
	// TYPE lines only.
	Samples []Sample
}

// L builds a label list from name, value pairs: L("gpu", "0", "check", "ecc").
// It panics on an odd number of arguments (a programming error).
func L(pairs ...string) []Label {
	if len(pairs)%2 != 0 {
		panic("metrics.L: odd number of arguments")
	}
	ls := make([]Label, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		ls = append(ls, Label{Name: pairs[i], Value: pairs[i+1]})
	}
	return ls
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Validate checks names, types and duplicates without writing anything.
func Validate(fams []Family) error {
	seen := make(map[string]bool, len(fams))
	for _, f := range fams {
		if !metricNameRE.MatchString(f.Name) {
			return fmt.Errorf("metric name %q is invalid", f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("metric %s: family given twice", f.Name)
		}
		seen[f.Name] = true
		switch f.Type {
		case "", Gauge, Counter, Untyped:
		default:
			return fmt.Errorf("metric %s: unsupported type %q", f.Name, f.Type)
		}
		sets := make(map[string]bool, len(f.Samples))
		for _, s := range f.Samples {
			names := make(map[string]bool, len(s.Labels))
			for _, l := range s.Labels {
				if !labelNameRE.MatchString(l.Name) || strings.HasPrefix(l.Name, "__") {
					return fmt.Errorf("metric %s: label name %q is invalid", f.Name, l.Name)
				}
				if names[l.Name] {
					return fmt.Errorf("metric %s: label %s given twice", f.Name, l.Name)
				}
				names[l.Name] = true
			}
			key := labelSetKey(s.Labels)
			if sets[key] {
				return fmt.Errorf("metric %s: duplicate sample {%s}", f.Name, formatLabels(s.Labels))
			}
			sets[key] = true
		}
	}
	return nil
}

// labelSetKey identifies a label set independent of order; labels with an
// empty value count as absent, as in Prometheus.
func labelSetKey(ls []Label) string {
	parts := make([]string, 0, len(ls))
	for _, l := range ls {
		if l.Value != "" {
			parts = append(parts, strconv.Quote(l.Name)+"="+strconv.Quote(l.Value))
		}
	}
	// Sorting keeps {a,b} and {b,a} the same set.
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// Write writes fams to w in the Prometheus text exposition format
// (version 0.0.4), after validating them, in the order given: families,
// samples and labels.
func Write(w io.Writer, fams []Family) error {
	if err := Validate(fams); err != nil {
		return err
	}
	return encode(w, fams)
}

// formatLabels renders name="value" pairs separated by commas.
func formatLabels(ls []Label) string {
	var b strings.Builder
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Name)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(l.Value))
		b.WriteByte('"')
	}
	return b.String()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// Bool returns 1 for true and 0 for false, for 0/1 gauges.
func Bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WriteTextfile atomically replaces dir/name with fams in the text format,
// mode 0644, for node-exporter's textfile collector. name must end in
// ".prom" (the collector reads nothing else) and must not contain a path
// separator. The temp file starts with a dot and does not end in ".prom",
// so the collector never reads it; it is removed on any error.
func WriteTextfile(dir, name string, fams []Family) (err error) {
	if !strings.HasSuffix(name, ".prom") || strings.ContainsRune(name, os.PathSeparator) || name == ".prom" {
		return fmt.Errorf("metrics textfile name %q must be a plain file name ending in .prom", name)
	}
	if err := Validate(fams); err != nil {
		return fmt.Errorf("metrics textfile %s: %w", name, err)
	}
	if dir == "" {
		return errors.New("metrics textfile: no folder given")
	}
	if err := atomicfile.Write(filepath.Join(dir, name), 0o644, func(w io.Writer) error { return Write(w, fams) }); err != nil {
		return fmt.Errorf("metrics textfile: %w", err)
	}
	return nil
}
