package mongo

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Consistency values recorded in the index (Stats.Details["consistency"]).
const (
	// PointInTime: every collection was read in one snapshot session at
	// one cluster time (replica set or sharded cluster, MongoDB 5.0+).
	PointInTime = "point-in-time"
	// PerCollection: each collection was read on its own; writes between
	// two collections' reads may show in one and not the other.
	PerCollection = "per-collection"
)

// minSnapshotWireVersion is the wire version of MongoDB 5.0, the first
// release with snapshot reads (readConcern "snapshot") outside
// transactions.
const minSnapshotWireVersion = 13

// Decision is what the hello answer of a server allows.
type Decision struct {
	// Consistency is PointInTime or PerCollection.
	Consistency string
	// Topology describes the server: "standalone", "replica set NAME
	// (primary)", "sharded cluster (mongos)".
	Topology string
	// Reason says, for PerCollection, why a point-in-time dump is not
	// possible; empty for PointInTime.
	Reason string
}

// helloAnswer holds the fields of a hello (or legacy isMaster) answer the
// decision reads. See https://www.mongodb.com/docs/manual/reference/command/hello/.
type helloAnswer struct {
	SetName           string `bson:"setName"`
	Msg               string `bson:"msg"`
	IsWritablePrimary *bool  `bson:"isWritablePrimary"`
	IsMaster          *bool  `bson:"ismaster"`
	Secondary         bool   `bson:"secondary"`
	ArbiterOnly       bool   `bson:"arbiterOnly"`
	Hidden            bool   `bson:"hidden"`
	MaxWireVersion    int32  `bson:"maxWireVersion"`
}

// Decide chooses the consistency of a dump from the server's answer to
// hello: a point-in-time dump needs snapshot reads, which only replica set
// members and mongos (sharded clusters) of MongoDB 5.0 or newer (wire
// version 13) serve. A standalone server reads collection by collection.
func Decide(hello bson.Raw) (Decision, error) {
	var h helloAnswer
	if err := bson.Unmarshal(hello, &h); err != nil {
		return Decision{}, fmt.Errorf("mongo: decode the server's hello answer: %w", err)
	}
	var d Decision
	switch {
	case h.Msg == "isdbgrid":
		d.Topology = "sharded cluster (mongos)"
	case h.SetName != "":
		role := "secondary"
		switch {
		case (h.IsWritablePrimary != nil && *h.IsWritablePrimary) || (h.IsMaster != nil && *h.IsMaster):
			role = "primary"
		case h.ArbiterOnly:
			role = "arbiter"
		case !h.Secondary:
			role = "not primary or secondary"
		}
		d.Topology = fmt.Sprintf("replica set %s (%s)", h.SetName, role)
		if role == "arbiter" || role == "not primary or secondary" {
			d.Consistency = PerCollection
			d.Reason = "the server is a replica set member that cannot serve reads (" + role + ")"
			return d, nil
		}
	default:
		d.Topology = "standalone"
		d.Consistency = PerCollection
		d.Reason = "a standalone server has no snapshot reads; run it as a single-node replica set (docs/mongo.md)"
		return d, nil
	}
	if h.MaxWireVersion < minSnapshotWireVersion {
		d.Consistency = PerCollection
		d.Reason = fmt.Sprintf("snapshot reads need MongoDB 5.0 or newer (the server speaks wire version %d, 5.0 is %d)",
			h.MaxWireVersion, minSnapshotWireVersion)
		return d, nil
	}
	d.Consistency = PointInTime
	return d, nil
}
