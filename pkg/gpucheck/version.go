package gpucheck

import (
	"fmt"
	"strconv"
	"strings"
)

// parseVersion splits a dotted driver version ("550.54.15") into numbers.
func parseVersion(s string) ([]int, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("invalid version %q (use numbers and dots, e.g. 550.54.15)", s)
		}
		out[i] = n
	}
	return out, nil
}

// compareVersions compares dotted versions numerically, missing parts
// counting as 0: compareVersions("550.54.15", "550.54") is 1.
func compareVersions(a, b string) (int, error) {
	va, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	for i := 0; i < max(len(va), len(vb)); i++ {
		x, y := 0, 0
		if i < len(va) {
			x = va[i]
		}
		if i < len(vb) {
			y = vb[i]
		}
		if x != y {
			if x < y {
				return -1, nil
			}
			return 1, nil
		}
	}
	return 0, nil
}
