package backup

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testutil"
	"github.com/firetech/fireops/pkg/destination"
	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/partkind"
	"github.com/firetech/fireops/pkg/restore"
	"github.com/firetech/fireops/pkg/source/mongo"
)

// rawZstdFrame returns a zstd frame of exactly n bytes (n >= 10) made of
// raw blocks (window 128 KiB, no content size, no checksum) whose
// content is fill repeated.
func rawZstdFrame(n int, fill []byte) []byte {
	const maxBlock = 128 << 10
	out := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38} // magic, FHD, window 2^17
	i := 0
	for rest := n - len(out); rest > 0; {
		size := min(maxBlock, rest-3)
		if left := rest - 3 - size; left > 0 && left < 4 {
			size -= 4 - left // leave room for a next block of at least a byte
		}
		last := 0
		if rest-3-size == 0 {
			last = 1
		}
		var hdr [4]byte
		binary.LittleEndian.PutUint32(hdr[:], uint32(size<<3|last)) // raw block
		out = append(out, hdr[:3]...)
		for range size {
			out = append(out, fill[i%len(fill)])
			i++
		}
		rest -= 3 + size
	}
	return out
}

// TestMongoForgedPiece: a piece of the mongo part is replaced by a
// forged one of the same stored size that decrypts and decompresses
// fine (encrypted to the snapshot's public recipient). The SHA-256 of the
// piece list stops it before decryption: restore and verify fail with
// exit code 3 naming the piece, and nothing reaches the server.
func TestMongoForgedPiece(t *testing.T) {
	t.Parallel()
	_, db, c, cfg, dir := seededMongo(t)
	orig := mongotest.SortedHash(t, c, db)
	ctx := context.Background()
	res, err := Snapshot(ctx, cfg, SnapshotOptions{Only: []string{"mongo"}})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "backups")

	// Forge the last piece of the mongo part.
	l := readPieceList(t, root, mongoPart(t, res).List)
	n := len(l.Pieces) - 1
	piece := piecePath(t, root, res, "mongo:mongodb", n)
	pieceID := filepath.Base(piece)
	st, err := os.Stat(piece)
	testutil.Must(t, err)
	stored := st.Size()
	if stored != l.Pieces[n].Stored {
		t.Fatalf("piece %s: %d bytes stored, the list says %d", pieceID, stored, l.Pieces[n].Stored)
	}
	recipients, err := cfg.Recipients()
	if err != nil || len(recipients) == 0 {
		t.Fatalf("recipients: %v %v", recipients, err)
	}
	evil, err := bson.Marshal(bson.D{{Key: "_id", Value: "forged"}, {Key: "pwned", Value: true}})
	testutil.Must(t, err)
	seal := func(frame []byte) []byte {
		var b bytes.Buffer
		w, err := age.Encrypt(&b, recipients[0])
		testutil.Must(t, err)
		_, err = w.Write(frame)
		testutil.Must(t, err)
		testutil.Must(t, w.Close())
		return b.Bytes()
	}
	// The stored size grows strictly with the frame's: search the frame
	// size that gives the original stored size.
	var forged []byte
	for lo, hi := 10, int(stored); lo <= hi; {
		mid := (lo + hi) / 2
		b := seal(rawZstdFrame(mid, evil))
		switch {
		case int64(len(b)) < stored:
			lo = mid + 1
		case int64(len(b)) > stored:
			hi = mid - 1
		default:
			forged, lo = b, hi+1
		}
	}
	if forged == nil {
		t.Fatalf("no forged piece of %d stored bytes", stored)
	}
	// Sanity: the forgery decrypts and decompresses to attacker data.
	ids, err := destination.Identities(cfg, "")
	testutil.Must(t, err)
	ar, err := age.Decrypt(bytes.NewReader(forged), ids...)
	testutil.Must(t, err)
	frame, err := io.ReadAll(ar)
	testutil.Must(t, err)
	zr, err := zstd.NewReader(nil)
	testutil.Must(t, err)
	defer zr.Close()
	plain, err := zr.DecodeAll(frame, nil)
	if err != nil || !bytes.HasPrefix(plain, evil) {
		t.Fatalf("forged piece does not decode: %v", err)
	}
	testutil.Must(t, os.WriteFile(piece, forged, 0o600))

	// fireops returns the names of the collections of database d that
	// a restore stages or sets aside.
	fireops := func(d string) []string {
		t.Helper()
		names, err := c.Database(d).ListCollectionNames(ctx, bson.D{})
		testutil.Must(t, err)
		return slices.DeleteFunc(names, func(s string) bool {
			return !strings.HasPrefix(s, mongo.StagingPrefix) && !strings.HasPrefix(s, mongo.ReplacedPrefix) && !strings.Contains(s, "fireops")
		})
	}
	// Each failure names the piece and the hash check that stopped it.
	checkFailed := func(what string, err error) {
		t.Helper()
		if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), pieceID) || !strings.Contains(err.Error(), "sha256 differs") {
			t.Fatalf("%s: code %d, err %v", what, exitcode.Code(err), err)
		}
	}
	dbsBefore := mongotest.Databases(t, c, "")

	// Next to the live data with --to-db: no target database appears.
	prefix := "f" + strings.ToLower(res.ID[len(res.ID)-6:]) + "_"
	mongotest.DropLater(t, c, prefix+db)
	_, err = restore.Restore(ctx, cfg, restore.Options{Snapshot: res.ID, Parts: []string{"mongo"}, Mongo: partkind.MongoRestoreOptions{ToDB: prefix}})
	checkFailed("restore --to-db", err)
	if got := mongotest.Databases(t, c, prefix); len(got) > 0 {
		t.Errorf("restore --to-db of a forged piece created %v", got)
	}

	// In place with --drop: the live data stays as it was.
	_, err = restore.Restore(ctx, cfg, restore.Options{Snapshot: res.ID, Parts: []string{"mongo"}, Mongo: partkind.MongoRestoreOptions{Drop: true}})
	checkFailed("restore --drop", err)
	if got := mongotest.SortedHash(t, c, db); !maps.Equal(got, orig) {
		t.Errorf("live data changed by a failed restore: %v, want %v", got, orig)
	}
	if left := fireops(db); len(left) > 0 {
		t.Errorf("staging collections left in %s: %v", db, left)
	}

	// Level hashes finds it without an identity; restore-test too, and
	// drops nothing it did not create.
	noKey := *cfg
	noKey.Keys.IdentityFile = "/nonexistent/identity.txt"
	_, err = Verify(ctx, &noKey, VerifyOptions{Snapshot: res.ID, Level: LevelHashes})
	checkFailed("verify hashes", err)
	vr, err := Verify(ctx, cfg, VerifyOptions{Snapshot: res.ID, Level: LevelRestoreTest})
	if exitcode.Code(err) != exitcode.CheckFailed || len(vr) != 1 || vr[0].OK || !strings.Contains(vr[0].Error, pieceID) {
		t.Fatalf("restore-test: %+v, code %d, err %v", vr, exitcode.Code(err), err)
	}
	if left := mongotest.Databases(t, c, mongo.ScratchPrefix+res.ID); len(left) > 0 {
		t.Errorf("scratch databases left: %v", left)
	}

	// No database of ours appeared (others' may come and go meanwhile).
	for _, d := range mongotest.Databases(t, c, "") {
		if !slices.Contains(dbsBefore, d) && (strings.HasPrefix(d, prefix) || strings.Contains(d, res.ID)) {
			t.Errorf("database %s appeared", d)
		}
	}
	if got := mongotest.SortedHash(t, c, db); !maps.Equal(got, orig) {
		t.Errorf("live data changed: %v, want %v", got, orig)
	}
	if left := fireops(db); len(left) > 0 {
		t.Errorf("staging collections left in %s: %v", db, left)
	}
}
