package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

const docModule = "github.com/firetech/fireops/"

// TestArchitectureLayers holds docs/architecture.md to its own
// rule: "A package only imports packages of the same or a lower layer",
// with the layers as its table names them, and "This page is the map":
// every package that the mapped packages import (outside tests) is on it.
func TestArchitectureLayers(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec := strings.SplitN(string(doc), "## Layers", 2)
	if len(sec) != 2 {
		t.Fatal("docs/architecture.md has no ## Layers section")
	}
	table := strings.SplitN(sec[1], "\n## ", 2)[0]
	row := regexp.MustCompile(`^\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|`)
	var layers []string
	layerOf := map[string]int{}
	for _, line := range strings.Split(table, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(line, "|---") || m[1] == "layer" {
			continue
		}
		if m[1] != "" {
			layers = append(layers, m[1])
		}
		for _, p := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(m[2], -1) {
			name := p[1]
			if i := strings.Index(name, "{"); i >= 0 && strings.HasSuffix(name, "}") {
				for _, s := range strings.Split(name[i+1:len(name)-1], ",") {
					layerOf[name[:i]+s] = len(layers) - 1
				}
				continue
			}
			layerOf[name] = len(layers) - 1
		}
	}
	if len(layers) < 4 || len(layerOf) < 20 {
		t.Fatalf("could not read the layers table: %v, %d packages", layers, len(layerOf))
	}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		p := strings.TrimPrefix(f[0], docModule)
		lp, mapped := layerOf[p]
		if !mapped {
			continue // tests' helpers and internal/cmd tools
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, docModule) {
				continue
			}
			q := strings.TrimPrefix(imp, docModule)
			lq, ok := layerOf[q]
			if !ok {
				t.Errorf("%s (layer %q) imports %s, which docs/architecture.md does not place in any layer", p, layers[lp], q)
				continue
			}
			if lq < lp {
				t.Errorf("%s (layer %q) imports %s of the higher layer %q; docs/architecture.md: a package only imports packages of the same or a lower layer", p, layers[lp], q, layers[lq])
			}
		}
	}
}

// TestDocCommentsNameTheirSubject: every exported name of
// pkg/ and internal/ has a doc comment, and the comment is about that
// name, not about the unexported name it had before it moved package
// ("sortByConfig orders ..." on SortByConfig, "destHint is the hint" on
// OpenHint, "to is --to as given" on the field To). go doc shows these
// comments to the next maintainer under a name that no longer exists.
func TestDocCommentsNameTheirSubject(t *testing.T) {
	root := filepath.Join("..", "..")
	first := func(cg *ast.CommentGroup) string {
		s := strings.TrimSpace(cg.Text())
		for _, a := range []string{"A ", "An ", "The "} {
			s = strings.TrimPrefix(s, a)
		}
		if i := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' }); i >= 0 {
			s = s[:i]
		}
		return s
	}
	// An identifier in camelCase (destHint, DestError, openManifest), or
	// the name itself in another case (to for To).
	camel := regexp.MustCompile(`^[A-Za-z][a-z0-9]+[A-Z][A-Za-z0-9]*$`)
	stale := func(word, name string) bool {
		return word != name && (strings.EqualFold(word, name) || camel.MatchString(word))
	}
	// Methods whose meaning the interface they implement gives.
	conventional := map[string]bool{"Error": true, "Unwrap": true, "String": true, "Is": true}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if d.Name() == "testdata" || (strings.HasPrefix(d.Name(), ".") && p != root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") ||
			!(strings.HasPrefix(rel, "pkg/") || strings.HasPrefix(rel, "internal/")) {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		report := func(pos token.Pos, what string) {
			t.Errorf("%s: %s", fset.Position(pos), what)
		}
		check := func(pos token.Pos, name string, cg *ast.CommentGroup) {
			if cg == nil {
				report(pos, name+" has no doc comment")
				return
			}
			if w := first(cg); stale(w, name) {
				report(pos, "the doc comment of "+name+" starts with "+w+", a name that is not "+name)
			}
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv != nil {
					if conventional[d.Name.Name] {
						continue
					}
					rt := d.Recv.List[0].Type
					if s, ok := rt.(*ast.StarExpr); ok {
						rt = s.X
					}
					if ix, ok := rt.(*ast.IndexExpr); ok {
						rt = ix.X
					}
					if id, ok := rt.(*ast.Ident); ok && !id.IsExported() {
						continue
					}
				}
				check(d.Name.Pos(), d.Name.Name, d.Doc)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						doc := s.Doc
						if doc == nil {
							doc = d.Doc
						}
						check(s.Name.Pos(), s.Name.Name, doc)
						st, ok := s.Type.(*ast.StructType)
						if !ok {
							continue
						}
						for _, fl := range st.Fields.List {
							for _, n := range fl.Names {
								if n.IsExported() && fl.Doc != nil {
									if w := first(fl.Doc); w != n.Name && strings.EqualFold(w, n.Name) {
										report(n.Pos(), "the doc comment of field "+s.Name.Name+"."+n.Name+" starts with "+w)
									}
								}
							}
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if !n.IsExported() {
								continue
							}
							if d.Lparen.IsValid() {
								// In a group: the group's doc may speak for it.
								if s.Doc != nil {
									if w := first(s.Doc); w != n.Name && strings.EqualFold(w, n.Name) {
										report(n.Pos(), "the doc comment of "+n.Name+" starts with "+w)
									}
								}
								continue
							}
							check(n.Pos(), n.Name, d.Doc)
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
