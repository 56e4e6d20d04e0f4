package snapshot

import (
	"crypto/ed25519"
	"encoding/json"
	"testing"

	"github.com/firetech/fireops/pkg/keys"
)

// FuzzDecodeList: a piece list comes from the storage provider (checked
// against the signed manifest first, but the sweep and the rebuild read
// what is there): whatever the bytes, decoding never panics, and a list it
// accepts holds together (sizes add up, ids are ids, sizes are bounded).
func FuzzDecodeList(f *testing.F) {
	id := "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	good, _ := encodeList(5, []pieceRec{{size: 5, stored: 300}})
	f.Add(good)
	f.Add([]byte(`{"format":"fireops-pieces","version":2,"size":3,"pieces":[["` + id + `",3,200,"` + id + `"]]}`))
	f.Add([]byte(`{"format":"fireops-pieces","version":2,"size":-1,"pieces":[]}`))
	f.Add([]byte(`{"format":"fireops-pieces","version":2,"size":0,"pieces":[["x",1,1,"y"]]}`))
	f.Add([]byte(`{"pieces":[[1,2,3,4,5]]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := decodeList(data)
		if err != nil {
			return
		}
		var sum int64
		for _, p := range l.Pieces {
			if !ValidPieceID(p.ID) || !ValidPieceID(p.SHA256) || p.Size <= 0 || p.Stored <= 0 || p.Size > maxPieceRead {
				t.Fatalf("accepted a malformed piece %+v", p)
			}
			sum += p.Size
		}
		if sum != l.Size {
			t.Fatalf("accepted a list whose pieces add up to %d, not %d", sum, l.Size)
		}
	})
}

// FuzzParseManifest: a manifest is read from the provider; nothing in it
// is used unless its signature verifies, and parsing never panics. With a
// valid signature over fuzzed bytes (the signer's own bugs), a manifest
// that parses holds together.
func FuzzParseManifest(f *testing.F) {
	sk, err := keys.GenerateSigningKey()
	if err != nil {
		f.Fatal(err)
	}
	pub := sk.Public().(ed25519.PublicKey)
	m := Manifest{Format: FormatName, Version: FormatVersion, Snapshot: "20261202T030000Z-abcdef", Host: "gpu01",
		Lists: []Ref{{ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Size: 10, SHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}}
	good, _ := json.Marshal(m)
	f.Add(good, true)
	f.Add(good, false)
	f.Add([]byte(`{"format":"fireops-snapshot","version":1,"snapshot":"20261202T030000Z-abcdef","objects":[{"id":"x","size":1,"chunks":[]}]}`), true)
	f.Add([]byte(`{"format":"fireops-snapshot","version":2,"snapshot":"20261202T030000Z-abcdef","objects":[{"id":"0123456789abcdef0123456789abcdef","size":0,"chunks":[]}]}`), true)
	f.Add([]byte(`{"version":3}`), true)
	f.Fuzz(func(t *testing.T, data []byte, sign bool) {
		sig := make([]byte, ed25519.SignatureSize)
		if sign {
			sig = Sign(sk, data)
		}
		got, err := ParseManifest(data, sig, pub)
		if !sign {
			if err == nil {
				t.Fatal("an unsigned manifest was accepted")
			}
			return
		}
		if err != nil {
			return
		}
		if got.Version == FormatVersion && len(got.Objects) > 0 || got.Version == FormatV1 && len(got.Lists) > 0 {
			t.Fatalf("accepted a manifest mixing formats: %+v", got)
		}
		for _, l := range got.Lists {
			if !ValidPieceID(l.ID) || l.Size <= 0 {
				t.Fatalf("accepted a malformed list ref %+v", l)
			}
		}
	})
}
