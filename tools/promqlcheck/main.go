// Command promqlcheck parses PromQL expressions with Prometheus' own parser
// (github.com/prometheus/prometheus/promql/parser). pkg/deploy's tests run
// it on every expression of the rendered Grafana dashboards. It lives in
// its own module so that Prometheus' dependencies stay out of fireops'.
//
//	promqlcheck < exprs.json     a JSON array of strings
//
// It prints one line per expression that does not parse and exits 1 when
// there is one.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintln(os.Stderr, "promqlcheck: reading a JSON array of strings:", err)
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	bad := 0
	for i, e := range exprs {
		if _, err := p.ParseExpr(e); err != nil {
			fmt.Printf("%d: %q: %v\n", i, e, err)
			bad++
		}
	}
	if bad > 0 {
		os.Exit(1)
	}
	fmt.Printf("%d expressions parsed\n", len(exprs))
}
