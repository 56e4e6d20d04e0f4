package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/exitcode"
)

// commandPaths walks a new command tree, hidden commands included, and
// returns every command's path without "fireops" (nil for fireops).
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, s := range c.Commands() {
			walk(s, append(slices.Clip(path), s.Name()))
		}
	}
	walk((&app{}).rootCommand(), nil)
	if len(paths) < 30 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	return paths
}

// exitLine is one line of an EXIT STATUS block: the code, then its meaning.
var exitLine = regexp.MustCompile(`^  (\d+) +\S`)

// TestHelpEveryCommand runs `--help` of every command in the tree,
// present and future: each has examples and one EXIT STATUS block whose
// codes are those of docs/exit-codes.md, 0 and 2 among them.
func TestHelpEveryCommand(t *testing.T) {
	documented := []int{exitcode.OK, exitcode.Failure, exitcode.Usage, exitcode.CheckFailed, exitcode.LockBusy, exitcode.Interrupted}
	for _, path := range commandPaths(t) {
		name := strings.Join(append([]string{"fireops"}, path...), " ")
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(append(slices.Clip(path), "--help"), strings.NewReader(""), &out, &errb); code != 0 {
				t.Fatalf("%s --help: exit %d: %s", name, code, errb.String())
			}
			help := out.String()
			if !strings.Contains(help, "\nExamples:\n  fireops ") && !strings.Contains(help, "\nExamples:\n  # ") {
				t.Errorf("%s --help has no examples:\n%s", name, help)
			}
			if n := strings.Count(help, "EXIT STATUS"); n != 1 {
				t.Fatalf("%s --help has %d EXIT STATUS blocks, want 1:\n%s", name, n, help)
			}
			block := strings.SplitN(help[strings.Index(help, "\nEXIT STATUS\n")+len("\nEXIT STATUS\n"):], "\n\n", 2)[0]
			var codes []int
			for _, l := range strings.Split(block, "\n") {
				if m := exitLine.FindStringSubmatch(l); m != nil {
					c, _ := strconv.Atoi(m[1])
					codes = append(codes, c)
				} else if !strings.HasPrefix(l, "     ") {
					t.Errorf("%s: EXIT STATUS line %q is neither a code nor its continuation", name, l)
				}
			}
			for _, c := range codes {
				if !slices.Contains(documented, c) {
					t.Errorf("%s: EXIT STATUS lists %d, which docs/exit-codes.md does not define", name, c)
				}
			}
			if !slices.Contains(codes, exitcode.OK) || !slices.Contains(codes, exitcode.Usage) {
				t.Errorf("%s: EXIT STATUS lists %v, want 0 and 2 among them:\n%s", name, codes, block)
			}
			if !slices.IsSorted(codes) {
				t.Errorf("%s: EXIT STATUS codes %v are not in order", name, codes)
			}
		})
	}
}

// TestHelpTextsNameCommands: every entry of helpTexts names a command of
// the tree (a renamed command does not leave its help behind).
func TestHelpTextsNameCommands(t *testing.T) {
	have := map[string]bool{}
	for _, p := range commandPaths(t) {
		have[strings.Join(append([]string{"fireops"}, p...), " ")] = true
	}
	for k := range helpTexts {
		if !have[k] {
			t.Errorf("helpTexts[%q]: no such command", k)
		}
	}
}

// TestHelpExamples parses every example against the command tree: it
// starts with "fireops ", names commands that exist and flags that exist
// on them, with values they accept and as many arguments as they take.
func TestHelpExamples(t *testing.T) {
	n := 0
	for path, h := range helpTexts {
		for _, l := range h.examples {
			if strings.HasPrefix(l, "# ") {
				continue
			}
			n++
			if err := checkExample(l); err != nil {
				t.Errorf("%s: example %q: %v", path, l, err)
			}
		}
		if len(h.examples) == 0 || strings.HasPrefix(h.examples[len(h.examples)-1], "#") {
			t.Errorf("%s: examples %q end without a command line", path, h.examples)
		}
	}
	if n < 50 {
		t.Errorf("only %d examples", n)
	}
}

// TestCheckExampleFails: checkExample refuses what is not a working
// command line (so that TestHelpExamples can fail).
func TestCheckExampleFails(t *testing.T) {
	for _, l := range []string{
		"restore latest",                          // not fireops
		"fireops restor latest",                   // no such command
		"fireops restore latest --to-dir /x",      // no such flag
		"fireops restore",                         // restore needs an id
		"fireops verify a b",                      // verify takes at most one
		"fireops --lock-wait soon snapshot",       // not a duration
		"fireops users approve ada --yes",         // a flag of delete, not approve
		"fireops help verif",                      // help for no command
		"fireops completion bsh > /tmp/x",         // no such shell
		"fireops gpu check --expect-count eight",  // not a number
		"fireops verify \"$ID\"",                  // shell words
		"fireops users reset-password ada extra ", // one name only
	} {
		if err := checkExample(l); err == nil {
			t.Errorf("checkExample(%q) = nil, want an error", l)
		}
	}
	if err := checkExample("fireops restore latest --all --dry-run"); err != nil {
		t.Errorf("checkExample of a good example: %v", err)
	}
}

// checkExample parses one example command line as fireops would run it,
// without running it.
func checkExample(line string) error {
	for _, redir := range []string{" > ", " < "} {
		if i := strings.Index(line, redir); i >= 0 {
			line = line[:i]
		}
	}
	if strings.ContainsAny(line, "'\"$`;&|*?") {
		return errors.New("only plain words and a trailing > FILE or < FILE")
	}
	words := strings.Fields(line)
	if len(words) < 2 || words[0] != "fireops" {
		return errors.New(`does not start with "fireops "`)
	}
	root := (&app{}).rootCommand()
	cmd, rest, err := root.Find(words[1:])
	if err != nil {
		return err
	}
	cmd.InitDefaultHelpFlag()
	if err := cmd.ParseFlags(rest); err != nil {
		return err
	}
	if help, _ := cmd.Flags().GetBool("help"); help {
		return nil
	}
	args := cmd.Flags().Args()
	if cmd.Name() == "help" {
		c := root
		for _, w := range args {
			if c = subcommand(c, w); c == nil {
				return errors.New("help for a command that does not exist")
			}
		}
		return nil
	}
	if err := cmd.ValidateArgs(args); err != nil {
		return err
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return err
	}
	return cmd.ValidateFlagGroups()
}

// TestHelpBoolFlagsSayHowToTurnOff: a boolean flag that is on unless
// turned off says to write --NAME=false (`--NAME false` is an argument).
func TestHelpBoolFlagsSayHowToTurnOff(t *testing.T) {
	for _, path := range commandPaths(t) {
		root := (&app{}).rootCommand()
		c, _, err := root.Find(path)
		if err != nil {
			t.Fatal(err)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() == "bool" && f.DefValue == "true" && !strings.Contains(f.Usage, "--"+f.Name+"=false") {
				t.Errorf("%s --%s defaults to true, but its help does not say --%s=false", c.CommandPath(), f.Name, f.Name)
			}
		})
	}
	// Its default is the config's, true when unset.
	root := (&app{}).rootCommand()
	c, _, _ := root.Find([]string{"gpu", "check"})
	if f := c.Flags().Lookup("require-container-runtime"); f == nil || !strings.Contains(f.Usage, "--require-container-runtime=false") {
		t.Errorf("gpu check --require-container-runtime does not say how to turn it off: %+v", f)
	}
	// documentBoolDefaults adds it to a flag that defaults to true.
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.Bool("color", true, "color the output")
	documentBoolDefaults(fs)
	if got := fs.Lookup("color").Usage; got != "color the output (turn off with --color=false)" {
		t.Errorf("documentBoolDefaults: %q", got)
	}
}

// TestBoolFlagValueHint: `--flag false` (a word of its own) is a usage
// error whose hint says to write --flag=false.
func TestBoolFlagValueHint(t *testing.T) {
	for _, c := range []struct {
		args     []string
		err      string
		wantHint string
	}{
		{[]string{"gpu", "check", "--require-container-runtime", "false"}, `unknown command "false" for "fireops gpu check"`,
			"write --require-container-runtime=false"},
		{[]string{"gpu", "check", "--strict", "true"}, `unknown command "true"`, "write --strict=true"},
		{[]string{"deploy", "--dry-run", "false"}, `unknown command "false" for "fireops deploy"`, "write --dry-run=false"},
		{[]string{"--json", "true", "version"}, `unknown command "true" for "fireops"`, "write --json=true"},
		{[]string{"-q", "false", "version"}, `unknown command "false" for "fireops"`, "write --quiet=false"},
		// Not after a boolean flag: the hint stays.
		{[]string{"version", "false"}, `unknown command "false" for "fireops version"`, "run `fireops help` or add --help to the command"},
		{[]string{"config", "chek"}, `unknown command "chek"`, "run `fireops config --help`"},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, strings.NewReader(""), &out, &errb)
		if code != exitcode.Usage {
			t.Errorf("fireops %s: exit %d, want 2", strings.Join(c.args, " "), code)
		}
		lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], c.err) || !strings.HasPrefix(lines[1], "fireops: hint: ") || !strings.Contains(lines[1], c.wantHint) {
			t.Errorf("fireops %s: stderr\n%s\nwant an error with %q and a hint with %q", strings.Join(c.args, " "), errb.String(), c.err, c.wantHint)
		}
	}
}

// TestOneLineSuggestions: cobra's multi-line "Did you mean this?" block
// becomes part of the one error line, as fireops' own errors say it.
func TestOneLineSuggestions(t *testing.T) {
	for in, want := range map[string]string{
		"unknown command \"snapshto\" for \"fireops\"\n\nDid you mean this?\n\tsnapshot\n\tsnapshots\n": `unknown command "snapshto" for "fireops" (did you mean "snapshot" or "snapshots"?)`,
		"invalid argument \"ful\" for \"fireops x\"\n\nDid you mean this?\n\tfull\n":                    `invalid argument "ful" for "fireops x" (did you mean "full"?)`,
		"a\nb  c": "a b c",
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestVersionFlag: `fireops --version` prints what `fireops version` does.
func TestVersionFlag(t *testing.T) {
	var v1, v2, e bytes.Buffer
	if code := run([]string{"version"}, strings.NewReader(""), &v1, &e); code != 0 {
		t.Fatalf("version: exit %d: %s", code, e.String())
	}
	if code := run([]string{"--version"}, strings.NewReader(""), &v2, &e); code != 0 {
		t.Fatalf("--version: exit %d: %s", code, e.String())
	}
	if v1.String() != v2.String() || !strings.HasPrefix(v1.String(), "fireops ") {
		t.Errorf("--version printed %q, version %q", v2.String(), v1.String())
	}
}

// manPages lists the man page every command the user can run should have:
// fireops.1, fireops-restore.1, ... (not help, nor hidden commands).
func manPages(t *testing.T) []string {
	var pages []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() {
			return
		}
		pages = append(pages, strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk((&app{}).rootCommand())
	if len(pages) < 28 {
		t.Fatalf("only %d man pages expected: %v", len(pages), pages)
	}
	return pages
}

// checkManPages checks that dir holds exactly one page per command, each
// with its examples and its EXIT STATUS section.
func checkManPages(t *testing.T, dir string) {
	t.Helper()
	want := manPages(t)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("man pages in %s:\n%v\nwant\n%v", dir, got, want)
	}
	for _, p := range got {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, sec := range []string{".SH NAME", ".SH SYNOPSIS", ".SH EXAMPLE", ".SH EXIT STATUS"} {
			if !strings.Contains(s, sec+"\n") {
				t.Errorf("%s has no %s section", p, sec)
			}
		}
		if !strings.Contains(s, ".SH EXAMPLE\n.EX\n") || !strings.Contains(s, "\nfireops ") {
			t.Errorf("%s has no example command line", p)
		}
		if strings.Contains(s, "/elsewhere/") {
			t.Errorf("%s depends on $%s of the shell that wrote it", p, config.EnvPath)
		}
	}
	restore, err := os.ReadFile(filepath.Join(dir, "fireops-restore.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"\nfireops restore latest --all --dry-run\n", ".TP\n\\fB3\\fP\n"} {
		if !strings.Contains(string(restore), s) {
			t.Errorf("fireops-restore.1 lacks %q:\n%s", s, restore)
		}
	}
}

// TestGenDocsManPages: `fireops gen-docs --man DIR` writes one man page
// per command, with its examples and exit codes; the hidden command is in
// neither help nor completion.
func TestGenDocsManPages(t *testing.T) {
	t.Setenv(config.EnvPath, "/elsewhere/fireops.yaml")
	dir := filepath.Join(t.TempDir(), "man1")
	var out, errb bytes.Buffer
	if code := run([]string{"gen-docs", "--man", dir}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("gen-docs: exit %d: %s", code, errb.String())
	}
	if out.Len() > 0 || errb.Len() > 0 {
		t.Errorf("gen-docs printed %q %q", out.String(), errb.String())
	}
	checkManPages(t, dir)

	if code := run([]string{"gen-docs"}, strings.NewReader(""), &out, &errb); code != exitcode.Usage {
		t.Errorf("gen-docs without --man: exit %d, want 2", code)
	}
	out.Reset()
	run([]string{"--help"}, strings.NewReader(""), &out, &errb)
	if strings.Contains(out.String(), "gen-docs") {
		t.Errorf("fireops --help shows gen-docs:\n%s", out.String())
	}
	out.Reset()
	run([]string{"__complete", "ge"}, strings.NewReader(""), &out, &errb)
	if strings.Contains(out.String(), "gen-docs") {
		t.Errorf("completion offers gen-docs:\n%s", out.String())
	}
}

// TestMakeInstallFiles runs `make install-files` (what `make install` runs
// after building) into a temp DESTDIR with this test's fireops: the
// binary, a man page per command, and the three completion scripts.
func TestMakeInstallFiles(t *testing.T) {
	makeBin := testenv.RequireTool(t, "make")
	testenv.RequireTool(t, "install")
	fireops, err := exec.LookPath("fireops") // testscript.Main put it on $PATH
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	cmd := exec.Command(makeBin, "--no-print-directory", "-C", root, "install-files", "DESTDIR="+dest, "BIN="+fireops, "PREFIX=/usr/local")
	cmd.Env = append(os.Environ(), config.EnvPath+"=/elsewhere/fireops.yaml")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install-files: %v\n%s", err, out)
	}
	checkManPages(t, filepath.Join(dest, "usr/local/share/man/man1"))
	for f, want := range map[string]string{
		"usr/local/bin/fireops":                                  "",
		"usr/local/share/bash-completion/completions/fireops":    "bash completion V2 for fireops",
		"usr/local/share/zsh/site-functions/_fireops":            "#compdef fireops",
		"usr/local/share/fish/vendor_completions.d/fireops.fish": "fish completion for fireops",
	} {
		b, err := os.ReadFile(filepath.Join(dest, f))
		if err != nil {
			t.Error(err)
			continue
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s does not contain %q", f, want)
		}
	}
}
