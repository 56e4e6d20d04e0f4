package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/pkg/exitcode"
)

// TestEveryGroupRejectsUnknownSubcommands walks the whole command tree:
// every command with subcommands, present and future, exits 2 on a word
// that names none of them, and names the word.
func TestEveryGroupRejectsUnknownSubcommands(t *testing.T) {
	a := &app{}
	root := a.rootCommand()
	var groups [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.HasSubCommands() {
			groups = append(groups, path)
		}
		for _, s := range c.Commands() {
			walk(s, append(append([]string(nil), path...), s.Name()))
		}
	}
	walk(root, nil)
	if len(groups) < 5 {
		t.Fatalf("only %d groups found: %v", len(groups), groups)
	}
	for _, g := range groups {
		args := append(append([]string(nil), g...), "zzbogus")
		var out, errb bytes.Buffer
		code := run(args, strings.NewReader(""), &out, &errb)
		if code != exitcode.Usage {
			t.Errorf("fireops %s: exit %d, want %d; stderr: %s", strings.Join(args, " "), code, exitcode.Usage, errb.String())
		}
		if !strings.Contains(errb.String(), `unknown command "zzbogus"`) || !strings.Contains(errb.String(), "valid subcommands: ") {
			t.Errorf("fireops %s: stderr does not name the word and the valid subcommands: %s", strings.Join(args, " "), errb.String())
		}
		if out.Len() > 0 {
			t.Errorf("fireops %s: wrote to stdout: %s", strings.Join(args, " "), out.String())
		}
	}
}
