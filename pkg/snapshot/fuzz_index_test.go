package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"testing"
	"time"

	"filippo.io/age"
)

// oneFileStore is a Store holding one file, for the index fuzz target.
type oneFileStore struct {
	path string
	data []byte
}

func (s *oneFileStore) Name() string                                  { return "fuzz" }
func (s *oneFileStore) Put(context.Context, string, []byte) error     { return errors.New("read-only") }
func (s *oneFileStore) List(context.Context, string) ([]Entry, error) { return nil, nil }
func (s *oneFileStore) Delete(context.Context, string) error          { return nil }
func (s *oneFileStore) Rmdir(context.Context, string) error           { return nil }
func (s *oneFileStore) Get(ctx context.Context, p string) (io.ReadCloser, error) {
	b, err := s.GetBytes(ctx, p, 1<<40)
	return io.NopCloser(bytes.NewReader(b)), err
}
func (s *oneFileStore) GetBytes(_ context.Context, p string, max int64) ([]byte, error) {
	if p != s.path {
		return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	if int64(len(s.data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, max)
	}
	return s.data, nil
}

// FuzzReadIndex: index.age is decrypted and decoded after its bytes
// matched the signed manifest, but its plaintext is whatever the writer
// (or a stolen signing key) put there. Whatever the bytes, encrypted to
// the identity (encrypt) or stored raw, ReadIndex never panics and never
// hangs, and an index it accepts belongs to the manifest's snapshot and
// names only piece lists (v2) or objects (v1) the manifest holds.
func FuzzReadIndex(f *testing.F) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	const snap = "20261202T030000Z-abcdef"
	list := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	obj := "0123456789abcdef0123456789abcdef"
	good, _ := json.Marshal(Index{Version: FormatVersion, Snapshot: snap, Host: "gpu01", Created: time.Unix(1700000000, 0).UTC(),
		Parts: []Part{{ID: "files:stack", Kind: "files", Name: "stack", List: list, Size: 10, Pieces: 1}}})
	f.Add(good, true, true)
	f.Add(good, true, false)
	f.Add([]byte(`{"version":1,"snapshot":"`+snap+`","parts":[{"id":"files:stack","kind":"files","name":"stack","object":"`+obj+`","stored":5}]}`), true, false)
	f.Add([]byte(`{"version":2,"snapshot":"`+snap+`","parts":[{"id":"x","list":"nope"}]}`), true, true)
	f.Add([]byte(`{"version":2,"snapshot":"other","parts":[]}`), true, true)
	f.Add([]byte(`{"snapshot":"`+snap+`","parts":[null,{}],"failed_parts":[{"id":"volume:u","reason":"x"}]}`), true, true)
	f.Add([]byte(`{"snapshot":"`+snap+`"} trailing`), true, true)
	f.Add([]byte("age-encryption.org/v1\n-> X25519 AAAA\n--- AAAA\n"), false, true)
	f.Add([]byte(`[]`), true, true)
	f.Fuzz(func(t *testing.T, data []byte, encrypt, v2 bool) {
		stored := data
		if encrypt {
			var buf bytes.Buffer
			w, err := age.Encrypt(&buf, id.Recipient())
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			stored = buf.Bytes()
		}
		sum := sha256.Sum256(stored)
		m := &Manifest{Format: FormatName, Version: FormatVersion, Snapshot: snap, Host: "gpu01",
			Index: Blob{Size: int64(len(stored)), SHA256: hex.EncodeToString(sum[:])},
			Lists: []Ref{{ID: list, Size: 10, SHA256: list}}}
		if !v2 {
			m.Version, m.Lists = FormatV1, nil
			m.Objects = []Object{{ID: obj, Size: 5}}
		}
		st := &oneFileStore{path: path.Join(SnapshotPath(m.Host, m.Snapshot), IndexFile), data: stored}
		idx, err := ReadIndex(context.Background(), st, m, []age.Identity{id})
		if err != nil {
			if !encrypt && errors.Is(err, ErrWrongIdentity) {
				return // raw bytes that parse as an age header for someone else
			}
			if !errors.Is(err, ErrIntegrity) && !errors.Is(err, ErrWrongIdentity) {
				t.Fatalf("ReadIndex failed without naming the damage: %v", err)
			}
			return
		}
		if idx.Snapshot != snap {
			t.Fatalf("accepted the index of snapshot %q", idx.Snapshot)
		}
		for _, p := range idx.Parts {
			if v2 {
				if _, ok := m.List(p.List); !ok {
					t.Fatalf("accepted part %+v whose list the manifest lacks", p)
				}
			} else if o, ok := m.Object(p.Object); !ok || o.Size != p.Stored {
				t.Fatalf("accepted part %+v whose object the manifest lacks", p)
			}
		}
	})
}
