package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type config\.(\w+)$`)
	lineMsg      = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	cannotDecode = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
	keyLine      = regexp.MustCompile(`^(-\s+)?([A-Za-z0-9_]+)\s*:(\s|$)`)
)

// yamlError turns yaml's messages into ones that name the key and its
// line, and says how to fix the first one. data is the config text.
func yamlError(err error, data []byte) (msg, hint string) {
	var parts []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		parts = te.Errors
	} else {
		parts = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	lines := strings.Split(string(data), "\n")
	msgs := make([]string, 0, len(parts))
	for _, m := range parts {
		var h string
		m, h = explainYAML(m, lines)
		if hint == "" {
			hint = h
		}
		msgs = append(msgs, m)
	}
	if hint == "" {
		hint = "fix the key named above; docs/configuration.md lists every key"
	}
	return strings.Join(msgs, "; "), hint
}

// explainYAML rewrites one yaml message, "line N: ...", naming the key of
// that line, and returns a hint for it ("" for the generic one).
func explainYAML(m string, lines []string) (string, string) {
	if s := unknownField.FindStringSubmatch(m); s != nil {
		return fmt.Sprintf("line %s: unknown key %q%s", s[1], s[2], section(s[3])), ""
	}
	s := lineMsg.FindStringSubmatch(m)
	if s == nil {
		return m, ""
	}
	n, _ := strconv.Atoi(s[1])
	what := s[2]
	if strings.Contains(what, "tab character") {
		// yaml may name the line before the one indented with a tab.
		for k := n; k <= n+1 && k <= len(lines); k++ {
			if _, _, _, tab := keyAt(lines, k); tab {
				n, s[1] = k, strconv.Itoa(k)
				break
			}
		}
	}
	key, leaf, value, tab := keyAt(lines, n)
	prefix := "line " + s[1] + ": "
	if key != "" {
		prefix += key + ": "
	}
	example := func(v string) string {
		if leaf == "" || strings.HasPrefix(value, "{") || strings.HasPrefix(value, "[") {
			return v
		}
		return leaf + ": " + v
	}
	if tab {
		return prefix + "indented with a tab", "indent with spaces, not tabs (YAML does not allow tabs in indentation)"
	}
	if c := cannotDecode.FindStringSubmatch(what); c != nil {
		from, val, into := c[1], c[2], c[3]
		switch {
		case strings.HasPrefix(into, "int") || strings.HasPrefix(into, "uint"):
			num := strings.TrimRightFunc(val, func(r rune) bool { return r < '0' || r > '9' })
			if num == "" || strings.TrimLeft(num, "0123456789") != "" {
				num = "2"
				if strings.HasPrefix(leaf, "keep_") {
					num = "7"
				}
			}
			return prefix + fmt.Sprintf("%q is not a whole number", val), "write a number without a unit or words, e.g. " + example(num)
		case into == "bool":
			return prefix + fmt.Sprintf("%q is not true or false", val), "write true or false, e.g. " + example("true")
		case into == "float64":
			return prefix + fmt.Sprintf("%q is not a number", val), "write a number, e.g. " + example("2.5")
		case strings.HasPrefix(into, "[]"):
			return prefix + "is a single value, not a list", "write a list: " + example("[a, b]") + ", or one '- item' a line"
		case into == "string" && (from == "seq" || from == "map"):
			return prefix + fmt.Sprintf("is a %s, not a single value", map[string]string{"seq": "list", "map": "map"}[from]),
				"quote the value: " + example(strconv.Quote(value))
		case strings.HasPrefix(into, "config.") || strings.HasPrefix(into, "map"):
			return prefix + fmt.Sprintf("is a single value (%q), not a section", val), "write its keys indented below it; docs/configuration.md lists them"
		}
		return prefix + what, ""
	}
	// A syntax error on a value YAML cannot read as it is: a cron spec
	// such as * 3 * * * or @daily is an alias or a reserved character.
	if v := strings.TrimSpace(value); v != "" && strings.ContainsAny(v[:1], "*@&!%`|>") {
		h := "quote the value: " + example(strconv.Quote(v))
		if isCronKey(key) {
			h = "quote the cron spec: " + example(strconv.Quote(v))
		}
		return prefix + fmt.Sprintf("YAML cannot read %s unquoted (%s)", v, what), h
	}
	switch {
	case strings.HasPrefix(what, "invalid duration"):
		return prefix + what, "write a duration with its unit: s, m, h, d or w, e.g. " + example("24h")
	case strings.HasPrefix(what, "invalid size"):
		return prefix + what, "write a size with a binary unit, e.g. " + example("32MiB")
	}
	if isCronKey(key) {
		return prefix + what, "quote the cron spec: " + example(strconv.Quote(strings.TrimSpace(value)))
	}
	return prefix + what, ""
}

func isCronKey(key string) bool {
	switch key {
	case "schedule.snapshot", "schedule.rotate", "schedule.verify", "schedule.gpu_check":
		return true
	}
	return false
}

// keyAt finds the key written on line n (1-based) of the config text and
// its path (retention.keep_daily, destinations[0].uploads), from the
// indentation of the lines above it. It also returns the last part of the
// key, the value written after it and whether the line is indented with a
// tab. In a flow-style section it names the key that opens the section.
func keyAt(lines []string, n int) (path, leaf, value string, tab bool) {
	if n < 1 || n > len(lines) {
		return "", "", "", false
	}
	ind, dash, rest := splitLine(lines[n-1])
	tab = strings.Contains(lines[n-1][:ind], "\t")
	m := keyLine.FindStringSubmatch(rest)
	if m == nil {
		return "", "", "", tab
	}
	leaf = m[2]
	value = strings.TrimSpace(rest[len(m[0]):])
	if i := strings.Index(value, " #"); i >= 0 {
		value = strings.TrimSpace(value[:i])
	}
	out := []string{leaf}
	col, allowEq := ind+dash, false
	i := n - 2
	if dash > 0 {
		var idx int
		idx, i = countItems(lines, n-1, ind)
		out = append([]string{fmt.Sprintf("[%d]", idx)}, out...)
		col, allowEq = ind, true
	}
	for i >= 0 && (col > 0 || allowEq) {
		ind, dash, rest := splitLine(lines[i])
		if rest == "" || strings.HasPrefix(rest, "#") || ind > col || (ind == col && (!allowEq || dash > 0)) {
			i--
			continue
		}
		if dash > 0 {
			// We are inside this list item.
			var idx int
			idx, i = countItems(lines, i, ind)
			out = append([]string{fmt.Sprintf("[%d]", idx)}, out...)
			col, allowEq = ind, true
			continue
		}
		if km := keyLine.FindStringSubmatch(rest); km != nil {
			out = append([]string{km[2]}, out...)
			col, allowEq = ind, false
		}
		i--
	}
	return strings.ReplaceAll(strings.Join(out, "."), ".[", "["), leaf, value, tab
}

// splitLine returns a line's indentation width, the width of a leading
// "- " (0 when the line is no list item) and the text after both.
func splitLine(l string) (ind, dash int, rest string) {
	rest = strings.TrimLeft(l, " \t")
	ind = len(l) - len(rest)
	if strings.HasPrefix(rest, "-") && (len(rest) == 1 || rest[1] == ' ' || rest[1] == '\t') {
		r := strings.TrimLeft(rest[1:], " \t")
		dash = len(rest) - len(r)
		rest = r
	}
	return ind, dash, rest
}

// countItems counts the list items at column d above line j (0-based) and
// returns the count with the line where the list starts (the line of its
// key, or -1).
func countItems(lines []string, j, d int) (int, int) {
	idx := 0
	for k := j - 1; k >= 0; k-- {
		ind, dash, rest := splitLine(lines[k])
		switch {
		case rest == "" || strings.HasPrefix(rest, "#") || ind > d:
		case ind == d && dash > 0:
			idx++
		default:
			return idx, k
		}
	}
	return idx, -1
}
