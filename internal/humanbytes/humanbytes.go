// Package humanbytes formats byte counts for people: the one formatter
// behind the commands' tables and progress lines, the deploy preflight's
// messages and the churn generator's summaries.
//
// Not github.com/dustin/go-humanize: its IBytes drops the decimal from 10
// up ("13 KiB" for 12,800 bytes), where fireops' tables have always shown
// one ("12.5 KiB").
package humanbytes

import "fmt"

// Format returns n with a binary unit and one decimal, in the largest unit
// n reaches: "512 B", "12.5 KiB", "3.0 GiB", up to EiB. Below 1 KiB it is
// the exact count.
func Format(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
