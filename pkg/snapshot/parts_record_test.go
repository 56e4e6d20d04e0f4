package snapshot

import (
	"os"
	"reflect"
	"testing"
)

// TestPartsWrittenRecord: the per-part record merges --only and partial
// runs, starts afresh at a clean run, forgets the snapshots rotate removes,
// skips malformed lines, and is written 0600.
func TestPartsWrittenRecord(t *testing.T) {
	t.Parallel()
	tg := newTestTagger(t)
	dir := t.TempDir()
	parts := func(ids ...string) []Part {
		var out []Part
		for _, id := range ids {
			out = append(out, Part{ID: id})
		}
		return out
	}
	const (
		s1 = "20260101T030000Z-aaaaaa"
		s2 = "20260102T030000Z-bbbbbb"
		s3 = "20260102T120000Z-cccccc"
		s4 = "20260103T030000Z-dddddd"
	)
	want := func(step string, exp ...string) {
		t.Helper()
		got := map[string]string{}
		for _, e := range PartsWritten(dir, "gpu01", "local") {
			if e.Tag != tg.Tag(e.Part) {
				t.Fatalf("%s: entry %+v has another part's tag", step, e)
			}
			got[e.Part] = e.Snapshot
		}
		w := map[string]string{}
		for i := 0; i < len(exp); i += 2 {
			w[exp[i]] = exp[i+1]
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("%s: record %v, want %v", step, got, w)
		}
	}
	rec := func(id string, clean bool, ids ...string) {
		t.Helper()
		if err := recordParts(dir, "gpu01", "local", id, Written{Tagger: tg, Parts: parts(ids...), Clean: clean}); err != nil {
			t.Fatal(err)
		}
	}
	want("no record")
	rec(s1, true, "files:stack", "sqlite:hub", "volume:jupyterhub-user-ada")
	want("clean run", "files:stack", s1, "sqlite:hub", s1, "volume:jupyterhub-user-ada", s1)
	rec(s2, false, "files:stack", "sqlite:hub") // ada's volume failed
	want("partial run", "files:stack", s2, "sqlite:hub", s2, "volume:jupyterhub-user-ada", s1)
	rec(s3, false, "sqlite:hub") // snapshot --only sqlite:hub
	want("--only run", "files:stack", s2, "sqlite:hub", s3, "volume:jupyterhub-user-ada", s1)
	if err := ForgetPartsWritten(dir, "gpu01", "local", s1); err != nil {
		t.Fatal(err)
	}
	want("rotate removed s1", "files:stack", s2, "sqlite:hub", s3)
	if len(PartsWritten(dir, "gpu01", "second")) != 0 {
		t.Fatal("another destination shares the record")
	}
	rec(s4, true, "files:stack", "sqlite:hub") // ada deleted: retired
	want("clean run again", "files:stack", s4, "sqlite:hub", s4)

	p := partsPath(dir, "gpu01", "local")
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("record %s: %v, mode %v, want 0600", p, err, st.Mode())
	}
	data, _ := os.ReadFile(p)
	if err := os.WriteFile(p, append(data, []byte("not a record\n"+tg.Tag("x")+" not-an-id sqlite:x\n"+tg.Tag("y")+" "+s4)...), 0o600); err != nil {
		t.Fatal(err)
	}
	want("malformed lines", "files:stack", s4, "sqlite:hub", s4)

	if err := ForgetPartsWritten(dir, "gpu01", "local", s4); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("an empty record stays: %v", err)
	}
}
