package users

import (
	"sort"
	"strings"
)

// CloseMatches returns up to max names from known that look like name:
// the same name in another case, names that contain it or that it
// contains, and names within a small edit distance, closest first.
func CloseMatches(name string, known []string, max int) []string {
	type cand struct {
		name string
		dist int
	}
	lname := strings.ToLower(name)
	limit := 2
	if len(name) <= 3 {
		limit = 1
	}
	var cands []cand
	for _, k := range known {
		if k == name {
			continue
		}
		lk := strings.ToLower(k)
		d := editDistance(lname, lk)
		switch {
		case lk == lname:
			d = 0
		case len(lname) >= 3 && (strings.Contains(lk, lname) || strings.Contains(lname, lk) && len(lk) >= 3):
			d = min(d, 1)
		}
		if d <= limit {
			cands = append(cands, cand{k, d})
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].dist != cands[j].dist {
			return cands[i].dist < cands[j].dist
		}
		return cands[i].name < cands[j].name
	})
	var out []string
	for _, c := range cands {
		if len(out) == max {
			break
		}
		out = append(out, c.name)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
