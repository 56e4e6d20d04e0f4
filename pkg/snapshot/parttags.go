package snapshot

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
)

// Part tags: which parts a snapshot holds, without their names.
//
// The manifest lists a keyed tag per part (Manifest.Parts): the first 16
// bytes of HMAC-SHA256(part id) under a key derived from the signing key,
// in hex. Equal tags are the same part, so rotate, which cannot read the
// encrypted index, counts its retention rules per part
// (pkg/retention/parts.go) and tells a `snapshot --only` run from a full
// one (Manifest.Only). The provider learns how many parts each snapshot
// holds and which snapshots share a part, not what the parts are: without
// the key, "volume:jupyterhub-user-ada" cannot be tried against a tag. A
// new signing key tags every part anew, as it starts a new dedup space.

// partTagLen is the length of a tag in hex digits.
const partTagLen = 32

var partTagRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// PartTagger computes the part tags of one signing key.
type PartTagger struct{ key []byte }

// NewPartTagger derives the tag key of a signing key.
func NewPartTagger(signer ed25519.PrivateKey) (*PartTagger, error) {
	if signer == nil {
		return nil, fmt.Errorf("no signing key: part tags are derived from it")
	}
	key, err := hkdf.Key(sha256.New, signer.Seed(), []byte("fireops part tags v1"), "part tags", 32)
	if err != nil {
		return nil, fmt.Errorf("derive part tag key: %w", err)
	}
	return &PartTagger{key: key}, nil
}

// Tag returns the tag of a part id ("volume:jupyterhub-user-ada").
func (t *PartTagger) Tag(partID string) string {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(partID))
	return hex.EncodeToString(m.Sum(nil))[:partTagLen]
}

// Tags returns the sorted tags of parts.
func (t *PartTagger) Tags(parts []Part) []string {
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		out = append(out, t.Tag(p.ID))
	}
	slices.Sort(out)
	return out
}

// checkPartTags validates a manifest's tags: well formed, sorted, one per
// part.
func checkPartTags(tags []string, parts int) error {
	if tags == nil {
		return nil // written before fireops recorded them
	}
	if len(tags) != parts {
		return fmt.Errorf("manifest has %d part tags for %d parts", len(tags), parts)
	}
	for i, tg := range tags {
		if !partTagRE.MatchString(tg) {
			return fmt.Errorf("manifest has an invalid part tag %q", tg)
		}
		if i > 0 && tags[i-1] >= tg {
			return fmt.Errorf("manifest's part tags are not sorted and unique")
		}
	}
	return nil
}
