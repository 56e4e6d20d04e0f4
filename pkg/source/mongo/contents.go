package mongo

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/firetech/fireops/pkg/exitcode"
)

// Namespace is one collection or view of a mongo part, as the index
// records it.
type Namespace struct {
	DB   string `json:"db"`
	Coll string `json:"collection"`
	// View is set for a view; ViewOn is what it reads.
	View   bool   `json:"view,omitempty"`
	ViewOn string `json:"view_on,omitempty"`
	// Documents, Bytes and DocSum describe a collection's documents.
	Documents int64  `json:"documents"`
	Bytes     int64  `json:"bytes"`
	DocSum    string `json:"docsum,omitempty"`
}

// String returns "db.coll".
func (n Namespace) String() string { return n.DB + "." + n.Coll }

// Contents returns the namespaces a part's Stats.Details records, sorted.
func Contents(details map[string]string) ([]Namespace, error) {
	byNS := map[string]*Namespace{}
	get := func(ns string) (*Namespace, error) {
		if n, ok := byNS[ns]; ok {
			return n, nil
		}
		db, coll, ok := strings.Cut(ns, ".")
		if !ok || db == "" || coll == "" {
			return nil, fmt.Errorf("mongo: index: %q is not a namespace", ns)
		}
		n := &Namespace{DB: db, Coll: coll}
		byNS[ns] = n
		return n, nil
	}
	for k, v := range details {
		key, ns, ok := strings.Cut(k, ":")
		if !ok {
			continue
		}
		var err error
		var n *Namespace
		switch key {
		case "count", "bytes", "docsum", "view":
			if n, err = get(ns); err != nil {
				return nil, err
			}
		default:
			continue
		}
		switch key {
		case "count":
			n.Documents, err = strconv.ParseInt(v, 10, 64)
		case "bytes":
			n.Bytes, err = strconv.ParseInt(v, 10, 64)
		case "docsum":
			n.DocSum = v
		case "view":
			n.View, n.ViewOn = true, v
		}
		if err != nil {
			return nil, fmt.Errorf("mongo: index: %s: %w", k, err)
		}
	}
	out := make([]Namespace, 0, len(byNS))
	for _, n := range byNS {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b Namespace) int {
		if c := strings.Compare(a.DB, b.DB); c != 0 {
			return c
		}
		return strings.Compare(a.Coll, b.Coll)
	})
	return out, nil
}

// Selection is a list of namespace patterns: "db.coll" or "db.*". An
// empty Selection selects everything.
type Selection []string

// ParseSelection checks --ns values.
func ParseSelection(ns []string) (Selection, error) {
	for _, s := range ns {
		db, coll, ok := strings.Cut(s, ".")
		if !ok || coll == "" || checkDBName(db) != nil {
			return nil, exitcode.Usagef("give DB.COLLECTION or DB.*", "--ns %q is not a namespace", s)
		}
	}
	return Selection(ns), nil
}

// Match reports whether db.coll is selected.
func (s Selection) Match(db, coll string) bool {
	if len(s) == 0 {
		return true
	}
	for _, p := range s {
		if p == db+".*" || p == db+"."+coll {
			return true
		}
	}
	return false
}

// Filter returns the namespaces selected, and an error naming a pattern
// that selects none of them.
func (s Selection) Filter(all []Namespace) ([]Namespace, error) {
	var out []Namespace
	for _, n := range all {
		if s.Match(n.DB, n.Coll) {
			out = append(out, n)
		}
	}
	for _, p := range s {
		if !slices.ContainsFunc(all, func(n Namespace) bool { return Selection{p}.Match(n.DB, n.Coll) }) {
			var have []string
			for i, n := range all {
				if i == 20 {
					have = append(have, fmt.Sprintf("... (%d in all)", len(all)))
					break
				}
				have = append(have, n.String())
			}
			return nil, exitcode.Usagef("the part has: "+strings.Join(have, ", "), "--ns %s matches nothing in the snapshot", p)
		}
	}
	return out, nil
}
