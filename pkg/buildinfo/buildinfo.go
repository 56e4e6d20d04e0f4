// Package buildinfo says which fireops this is: version, commit and build
// date set at link time (-ldflags -X), with fallbacks from the Go build
// information when a plain `go build` or `go install` made the binary.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set with -ldflags "-X github.com/firetech/fireops/pkg/buildinfo.Version=..."
// and likewise Commit and Date (the Makefile does).
var (
	// Version is the release version, e.g. v0.1.0.
	Version = ""
	// Commit is the git commit the binary was built from.
	Commit = ""
	// Date is the build time in RFC 3339.
	Date = ""
)

// Info is the build information of the running binary.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Get returns the build information, filling what ldflags left empty from
// the module and VCS data the Go toolchain embeds, or "unknown".
func Get() Info {
	info := Info{Version: Version, Commit: Commit, Date: Date,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && info.Commit == "":
				info.Commit = s.Value
			case s.Key == "vcs.time" && info.Date == "":
				info.Date = s.Value
			}
		}
	}
	for _, f := range []*string{&info.Version, &info.Commit, &info.Date} {
		if *f == "" {
			*f = "unknown"
		}
	}
	if info.Version == "unknown" {
		info.Version = "dev"
	}
	return info
}
