package mongo

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/firetech/fireops/pkg/source"
)

var _ source.Sizer = (*Source)(nil)

// Size estimates the dump's size for a progress display: the dataSize
// (the documents' BSON size, what the dump holds) that dbStats reports
// for each database dumped. It is an estimate: the statistics lag behind
// writes, and the dump adds each collection's metadata.
func (s *Source) Size(ctx context.Context) (int64, error) {
	c, err := connect(ctx, s.uri, s.opts)
	if err != nil {
		return 0, err
	}
	defer c.Disconnect(context.WithoutCancel(ctx))
	dbs := s.databases
	if len(dbs) == 0 {
		all, err := c.ListDatabaseNames(ctx, bson.D{})
		if err != nil {
			return 0, explain(err, s.uri, "list databases")
		}
		for _, d := range all {
			if dumpedDatabase(d) {
				dbs = append(dbs, d)
			}
		}
	}
	var total int64
	for _, d := range dbs {
		var st struct {
			DataSize float64 `bson:"dataSize"`
		}
		if err := c.Database(d).RunCommand(ctx, bson.D{{Key: "dbStats", Value: 1}, {Key: "scale", Value: 1}}).Decode(&st); err != nil {
			return 0, fmt.Errorf("mongo: %s: %w", d, explain(err, s.uri, "dbStats"))
		}
		total += int64(st.DataSize)
	}
	return total, nil
}
