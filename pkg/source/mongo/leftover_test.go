package mongo

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/pkg/leftover"
)

// deadTag is the run tag of a run of this boot that is gone: its pid is
// above the kernel's largest (pid_max is at most 2^22), as after SIGKILL.
func deadTag(n int) string {
	boot, _, _ := strings.Cut(leftover.Tag(), "-")
	return boot + "-" + strconv.Itoa(1<<22+n) + "-5"
}

// TestSpoolLeftoverRemoved: a spool file that a killed snapshot left in
// the temp folder (only possible without O_TMPFILE, between create and
// unlink) is removed by the next snapshot, with a log line; a live run's
// is kept.
func TestSpoolLeftoverRemoved(t *testing.T) {
	t.Parallel()
	uri, db, _ := seededSmall(t)
	dir := t.TempDir()
	dead := filepath.Join(dir, spoolPrefix+deadTag(101)+"-123")
	live := filepath.Join(dir, spoolPrefix+leftover.Tag()+"-456")
	for _, p := range []string{dead, live} {
		if err := os.WriteFile(p, []byte("ciphertext"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	src, err := New(uri, []string{db}, WithTempDir(dir), WithSpoolMemory(1<<10),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	dump(t, src)
	if _, err := os.Lstat(dead); err == nil {
		t.Errorf("the killed run's spool file %s is still there", dead)
	}
	if _, err := os.Lstat(live); err != nil {
		t.Errorf("a live run's spool file was removed: %v", err)
	}
	if !strings.Contains(logs.String(), `msg="removed what an interrupted fireops run left behind" path=`+dead) {
		t.Errorf("no log line for the removal:\n%s", logs.String())
	}
	// The dump spilled (1 KiB in memory) and left no file behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != filepath.Base(live) {
		t.Errorf("the temp folder holds %v", ents)
	}
}

// TestStagingLeftoversDropped: staging collections that a killed restore
// of this host left in the target database are dropped by the next
// restore into it, with a log line; a live run's, another host's, an older
// fireops's (untagged) and a collection moved aside (holding live
// documents) are kept, the last two named in a warning. (A trial view is
// dropped the same way; FerretDB has no views to test it with.)
func TestStagingLeftoversDropped(t *testing.T) {
	t.Parallel()
	uri, db, c := seededSmall(t)
	payload, contents := dumpDB(t, uri, db)

	prefix := "r" + randomHex(3) + "_"
	target := prefix + db
	mongotest.DropLater(t, c, target)
	otherHost := "00000000"
	if leftover.Host() == otherHost {
		otherHost = "00000001"
	}
	host := leftover.Host()
	dead := []string{
		StagingPrefix + deadTag(201) + "-" + host + "-0badc0de-0",
		StagingPrefix + deadTag(201) + "-" + host + "-0badc0de-1",
	}
	kept := []string{
		leftover.Name(StagingPrefix, host+"-c0ffee00-0"),           // this process: alive
		StagingPrefix + deadTag(203) + "-" + otherHost + "-abcd-0", // another host's run
		StagingPrefix + "0123abcd-0",                               // an older fireops
		ReplacedPrefix + deadTag(204) + "-" + host + "-abcd-0",     // live documents moved aside
	}
	ctx := context.Background()
	tdb := c.Database(target)
	for _, name := range append(slices.Clone(dead), kept...) {
		if _, err := tdb.Collection(name).InsertOne(ctx, bson.D{{Key: "secret", Value: "plaintext"}}); err != nil {
			t.Fatal(err)
		}
	}

	var logs bytes.Buffer
	r, err := NewRestorer(uri, RestoreOptions{ToDB: prefix, Expect: contents},
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.Stage(ctx, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx); err != nil {
		st.Abort()
		t.Fatal(err)
	}
	names, err := tdb.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range dead {
		if slices.Contains(names, name) {
			t.Errorf("%s, left by a killed restore, is still there", name)
		}
		if !strings.Contains(logs.String(), `msg="removed what an interrupted fireops run left behind" collection=`+target+"."+name) {
			t.Errorf("no log line for %s", name)
		}
	}
	for _, name := range kept {
		if !slices.Contains(names, name) {
			t.Errorf("%s was dropped", name)
		}
	}
	for _, want := range []string{"left by an older fireops: drop it", kept[2], "rename it back", kept[3]} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
	for _, name := range names {
		if strings.HasPrefix(name, StagingPrefix+leftover.Tag()) && name != kept[0] {
			t.Errorf("the restore left its own staging collection %s", name)
		}
	}
	if !slices.Contains(names, "runs") {
		t.Errorf("the restore did not restore: %v", names)
	}
}
