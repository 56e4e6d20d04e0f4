package snapshot

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/keys"
)

// TestTrustedKeys: a manifest verifies with any of the trusted keys, and
// the reader says which; one signed by a key left out of the trusted set
// is refused with an error naming the trusted keys and the signer the
// manifest names, and one altered under a trusted key says so.
func TestTrustedKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ctx := context.Background()
	st := e.stores[0]
	res := e.create(t, testSources())
	old := e.pub // the key the snapshot was signed with
	skNew, _ := keys.GenerateSigningKey()
	pubNew := skNew.Public().(ed25519.PublicKey)

	// With the old key still trusted beside the new one.
	m, signer, err := OpenSigned(ctx, st, "gpu01", res.ID, pubNew, old)
	if err != nil {
		t.Fatalf("old key still trusted: %v", err)
	}
	if !signer.Equal(old) || m.Snapshot != res.ID {
		t.Fatalf("signer %s, want %s", keys.Fingerprint(signer), keys.Fingerprint(old))
	}
	ls, err := List(ctx, st, "gpu01", pubNew, old)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || !ls[0].Complete || ls[0].Problem != "" || ls[0].Signer != keys.FormatPublicKey(old) {
		t.Fatalf("listing with both keys: %+v", ls)
	}

	// The old key dropped: refused, naming both keys and the fix.
	_, err = Open(ctx, st, "gpu01", res.ID, pubNew)
	if !errors.Is(err, ErrIntegrity) || !errors.Is(err, ErrUntrustedSigner) {
		t.Fatalf("old key dropped: err = %v, want ErrIntegrity and ErrUntrustedSigner", err)
	}
	// The signer's whole public key (what to add to the config), the
	// trusted ones short; not called damage.
	for _, want := range []string{res.ID, "signed by a key that is not trusted (signer " + keys.FormatPublicKey(old) + "); trusted: " + keys.Fingerprint(pubNew)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), ErrIntegrity.Error()) || strings.Count(err.Error(), res.ID) != 1 {
		t.Errorf("error %q: want the id once and no %q", err, ErrIntegrity)
	}
	ls, err = List(ctx, st, "gpu01", pubNew)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Complete || !strings.Contains(ls[0].Problem, keys.FormatPublicKey(old)) || ls[0].Signer != "" {
		t.Fatalf("listing without the old key: %+v", ls)
	}

	// No key at all: Open refuses, List lists unchecked; nil keys count
	// as none.
	if _, err := Open(ctx, st, "gpu01", res.ID, nil); err == nil || !strings.Contains(err.Error(), "keys.signing_public_keys") {
		t.Fatalf("no trusted key: err = %v", err)
	}
	ls, err = List(ctx, st, "gpu01", nil)
	if err != nil || len(ls) != 1 || !ls[0].Complete || !strings.Contains(ls[0].Problem, "not checked") {
		t.Fatalf("unchecked listing: %+v, %v", ls, err)
	}

	// A key of the wrong length verifies nothing (and does not panic).
	if _, err := Open(ctx, st, "gpu01", res.ID, old[:31]); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("a 31-byte key: err = %v", err)
	}

	// Altered under a trusted signer: not an untrusted signer.
	p := filepath.Join(st.root, SnapshotPath("gpu01", res.ID), ManifestFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(data), `"gpu01"`, `"gpu02"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, st, "gpu01", res.ID, pubNew, old)
	if !errors.Is(err, ErrIntegrity) || errors.Is(err, ErrUntrustedSigner) || !strings.Contains(err.Error(), "altered") ||
		!strings.Contains(err.Error(), keys.Fingerprint(pubNew)+", "+keys.Fingerprint(old)) {
		t.Fatalf("altered manifest: err = %v", err)
	}
}

// TestNewSigningKeyNewSpace: after a signing key change the next snapshot
// is in a new dedup space (no piece of the old key's snapshot is reused,
// even with the same reuse state), and the old snapshot's pieces fail a
// keyed-id check with the new key: a reader checks keyed ids only of
// snapshots signed by the key it holds (pkg/backup openManifest).
func TestNewSigningKeyNewSpace(t *testing.T) {
	t.Parallel()
	e, st, first := reusingEnv(t)
	ctx := context.Background()
	old, oldSK := e.pub, e.sk
	e.sk, _ = keys.GenerateSigningKey()
	e.pub = e.sk.Public().(ed25519.PublicKey)
	e.opts.Signer = e.sk
	second := e.create(t, testSources())
	pieces := func(id string, trusted ...ed25519.PublicKey) map[string]bool {
		t.Helper()
		m, err := Open(ctx, st, "gpu01", id, trusted...)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		if err := forEachList(ctx, st, m, func(_ Ref, l *PieceList) error {
			for _, p := range l.Pieces {
				out[p.ID] = true
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b := pieces(first.ID, old), pieces(second.ID, e.pub)
	for id := range b {
		if a[id] {
			t.Fatalf("piece %s is in both the old and the new key's snapshot: the new key did not start a new space", id)
		}
	}
	for _, p := range second.Parts {
		if p.Reused {
			t.Fatalf("part %s reused across a signing key change", p.ID)
		}
	}
	// Both restore; the new one with its keyed ids checked.
	e.restoreAll(t, st, second.ID)
	m, err := Open(ctx, st, "gpu01", first.ID, e.pub, old)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := ReadIndex(ctx, st, m, e.ids)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CheckPieceIDs(oldSK); err != nil {
		t.Fatal(err)
	}
	if _, err := RestorePart(ctx, st, m, idx.Parts[0], e.ids, &memRestorer{}); err != nil {
		t.Fatalf("old snapshot, old key's keyed ids: %v", err)
	}
	// The new key cannot check the old snapshot's keyed ids: a reader
	// that did would report intact data as damaged.
	m, _ = Open(ctx, st, "gpu01", first.ID, e.pub, old)
	if err := m.CheckPieceIDs(e.sk); err != nil {
		t.Fatal(err)
	}
	if _, err := RestorePart(ctx, st, m, idx.Parts[0], e.ids, &memRestorer{}); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("old snapshot checked with the new key's keyed ids: err = %v, want an integrity error", err)
	}
}
