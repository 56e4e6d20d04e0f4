package snapshot

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/keys"
)

// TestPartTags: a manifest records one keyed tag per part it holds and
// whether the run was an --only run; the listing carries both; the tags
// say nothing without the key (another signing key tags the same part
// otherwise), and a manifest whose tags do not match its parts is refused.
func TestPartTags(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ctx := context.Background()
	full, err := Create(ctx, e.opts, e.storeList(), testSources())
	if err != nil {
		t.Fatal(err)
	}
	only := e.opts
	only.Only = true
	part, err := Create(ctx, only, e.storeList(), testSources()[1:])
	if err != nil {
		t.Fatal(err)
	}
	tagger, err := NewPartTagger(e.sk)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		full.ID: {tagger.Tag("files:stack"), tagger.Tag("sqlite:hub")},
		part.ID: {tagger.Tag("sqlite:hub")},
	}
	ls, err := List(ctx, e.stores[0], e.opts.Host, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 {
		t.Fatalf("listing: %+v", ls)
	}
	for _, l := range ls {
		w := want[l.ID]
		slices.Sort(w)
		if !slices.Equal(l.PartTags, w) || l.Only != (l.ID == part.ID) {
			t.Fatalf("%s: tags %v only %v, want %v only %v", l.ID, l.PartTags, l.Only, w, l.ID == part.ID)
		}
		for _, tg := range l.PartTags {
			if strings.Contains(tg, "sqlite") || strings.Contains(tg, "hub") || len(tg) != 32 {
				t.Fatalf("tag %q", tg)
			}
		}
	}
	other, _ := keys.GenerateSigningKey()
	ot, err := NewPartTagger(other)
	if err != nil {
		t.Fatal(err)
	}
	if ot.Tag("sqlite:hub") == tagger.Tag("sqlite:hub") {
		t.Fatal("two signing keys give the same tag")
	}

	// Tags that do not match the parts: refused by the manifest check.
	p := filepath.Join(e.stores[0].root, SnapshotPath(e.opts.Host, full.ID), ManifestFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(m *Manifest){
		"one tag missing": func(m *Manifest) { m.Parts = m.Parts[:1] },
		"unsorted":        func(m *Manifest) { m.Parts[0], m.Parts[1] = m.Parts[1], m.Parts[0] },
		"not a tag":       func(m *Manifest) { m.Parts[0] = "volume:jupyterhub-user-ada" },
	} {
		var m Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if err := m.check(); err != nil {
			t.Fatalf("the written manifest: %v", err)
		}
		edit(&m)
		if err := m.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// newTestTagger returns a part tagger under a fresh signing key.
func newTestTagger(t *testing.T) *PartTagger {
	t.Helper()
	_, sk, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := NewPartTagger(sk)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}
