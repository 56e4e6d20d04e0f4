package mongo

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Collection types in listCollections answers and metadata.json.
const (
	TypeCollection = "collection"
	TypeView       = "view"
	TypeTimeseries = "timeseries"
)

// Metadata is one <db>/<coll>.metadata.json file, in mongodump's layout:
// the collection's options exactly as listCollections reports them
// (capped, size, max, validator, validationLevel, validationAction,
// collation, viewOn and pipeline of a view, timeseries, clusteredIndex,
// expireAfterSeconds, ...), every index spec exactly as listIndexes
// reports it (key, name, unique, sparse, partialFilterExpression,
// expireAfterSeconds, collation, weights, default_language, ...), the
// collection's UUID in hex, its name and its type. It is written as
// canonical Extended JSON, so that every number keeps its BSON type.
type Metadata struct {
	Options        bson.Raw
	Indexes        []bson.Raw
	UUID           string
	CollectionName string
	Type           string
}

// collSpec is the part of a listCollections entry the dump reads.
type collSpec struct {
	Name    string   `bson:"name"`
	Type    string   `bson:"type"`
	Options bson.Raw `bson:"options"`
	Info    struct {
		UUID bson.Binary `bson:"uuid"`
	} `bson:"info"`
}

// metadataFromSpec builds the metadata of one listCollections entry and
// its listIndexes answer (nil for a view).
func metadataFromSpec(spec bson.Raw, indexes []bson.Raw) (*Metadata, collSpec, error) {
	var cs collSpec
	if err := bson.Unmarshal(spec, &cs); err != nil {
		return nil, cs, fmt.Errorf("decode listCollections entry: %w", err)
	}
	if cs.Type == "" {
		cs.Type = TypeCollection
	}
	m := &Metadata{Options: cs.Options, Indexes: indexes, CollectionName: cs.Name, Type: cs.Type}
	if m.Options == nil {
		m.Options = emptyDoc
	}
	if len(cs.Info.UUID.Data) > 0 {
		m.UUID = hex.EncodeToString(cs.Info.UUID.Data)
	}
	return m, cs, nil
}

// emptyDoc is the BSON empty document.
var emptyDoc = bson.Raw{5, 0, 0, 0, 0}

// MarshalJSON encodes the metadata as canonical Extended JSON, fields in
// mongodump's order.
func (m *Metadata) MarshalJSON() ([]byte, error) {
	idx := bson.A{}
	for _, i := range m.Indexes {
		idx = append(idx, i)
	}
	d := bson.D{{Key: "options", Value: m.Options}, {Key: "indexes", Value: idx}}
	if m.UUID != "" {
		d = append(d, bson.E{Key: "uuid", Value: m.UUID})
	}
	d = append(d, bson.E{Key: "collectionName", Value: m.CollectionName}, bson.E{Key: "type", Value: m.Type})
	return bson.MarshalExtJSON(d, true, false)
}

// ParseMetadata decodes a metadata.json file (canonical or relaxed
// Extended JSON, as mongodump writes it).
func ParseMetadata(data []byte) (*Metadata, error) {
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON(data, true, &raw); err != nil {
		return nil, fmt.Errorf("decode metadata.json: %w", err)
	}
	var m struct {
		Options        bson.Raw   `bson:"options"`
		Indexes        []bson.Raw `bson:"indexes"`
		UUID           string     `bson:"uuid"`
		CollectionName string     `bson:"collectionName"`
		Type           string     `bson:"type"`
	}
	if err := bson.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode metadata.json: %w", err)
	}
	if m.CollectionName == "" {
		return nil, errors.New("metadata.json names no collection")
	}
	if m.Type == "" {
		m.Type = TypeCollection
	}
	if m.Options == nil {
		m.Options = emptyDoc
	}
	return &Metadata{Options: m.Options, Indexes: m.Indexes, UUID: m.UUID, CollectionName: m.CollectionName, Type: m.Type}, nil
}

// skippedOptions are collection options that create refuses or that
// describe storage of servers long gone (MMAPv1).
var skippedOptions = map[string]bool{"autoIndexId": true, "flags": true}

// CreateCommand returns the create command that makes a collection (or
// view) named name with the recorded options. For a view, viewOn names
// the collection the view reads in the target database (the recorded
// one unless the restore renames collections).
func (m *Metadata) CreateCommand(name, viewOn string) (bson.D, error) {
	cmd := bson.D{{Key: "create", Value: name}}
	elems, err := m.Options.Elements()
	if err != nil {
		return nil, fmt.Errorf("collection %s: options: %w", m.CollectionName, err)
	}
	for _, e := range elems {
		k := e.Key()
		if skippedOptions[k] {
			continue
		}
		if k == "viewOn" && viewOn != "" {
			cmd = append(cmd, bson.E{Key: k, Value: viewOn})
			continue
		}
		cmd = append(cmd, bson.E{Key: k, Value: e.Value()})
	}
	if m.Type == TypeView {
		if _, err := m.Options.LookupErr("viewOn"); err != nil {
			return nil, fmt.Errorf("view %s: metadata has no viewOn", m.CollectionName)
		}
	}
	return cmd, nil
}

// ViewOn returns the collection a view reads, or "".
func (m *Metadata) ViewOn() string {
	v, err := m.Options.LookupErr("viewOn")
	if err != nil {
		return ""
	}
	s, _ := v.StringValueOK()
	return s
}

// droppedIndexFields are left out of the specs given to createIndexes:
// "ns" (listed by servers before 4.4, refused since) and "v" (the index
// format version: the server picks its current one; FerretDB refuses it).
var droppedIndexFields = map[string]bool{"ns": true, "v": true}

// IndexSpecs returns the index specs to give createIndexes after the
// documents are loaded: every recorded index but the _id index (created
// with the collection, also the clustered index of a clustered
// collection), each with the recorded fields (key, name, unique, sparse,
// partialFilterExpression, expireAfterSeconds, collation, weights,
// default_language, language_override, textIndexVersion, hidden, ...)
// in their order, without "ns" and "v". A text index is given back in the
// form listIndexes reports it ({_fts: "text", _ftsx: 1} with weights),
// which createIndexes accepts.
func (m *Metadata) IndexSpecs() ([]bson.D, error) {
	var out []bson.D
	for i, raw := range m.Indexes {
		elems, err := raw.Elements()
		if err != nil {
			return nil, fmt.Errorf("collection %s: index %d: %w", m.CollectionName, i, err)
		}
		var spec bson.D
		name, clustered, hasKey := "", false, false
		for _, e := range elems {
			switch e.Key() {
			case "name":
				name, _ = e.Value().StringValueOK()
			case "clustered":
				clustered, _ = e.Value().BooleanOK()
			case "key":
				hasKey = true
			}
			if droppedIndexFields[e.Key()] {
				continue
			}
			spec = append(spec, bson.E{Key: e.Key(), Value: e.Value()})
		}
		if !hasKey || name == "" {
			return nil, fmt.Errorf("collection %s: index %d has no key or name", m.CollectionName, i)
		}
		if name == "_id_" || clustered {
			continue
		}
		out = append(out, spec)
	}
	return out, nil
}

// escapeName turns a collection name into a file name the way mongodump
// does for the characters that matter in a path: "%" and "/" are
// percent-encoded.
func escapeName(name string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(name)
}

// unescapeName reverses escapeName.
func unescapeName(name string) string {
	return strings.NewReplacer("%2F", "/", "%2f", "/", "%25", "%").Replace(name)
}
