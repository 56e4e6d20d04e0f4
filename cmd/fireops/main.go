// Command fireops runs the FireTech GPU server: deploy, GPU preflight, hub
// users, and encrypted, verified backups with restore. This package only
// parses flags and prints; the work is done in pkg/...
package main

import (
	"os"
)

func main() {
	os.Exit(Main())
}

// Main runs fireops with os.Args and returns the exit code (see
// docs/exit-codes.md). Tests run it through testscript.
func Main() int {
	return run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}
