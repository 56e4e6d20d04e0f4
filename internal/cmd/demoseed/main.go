// Command demoseed fills (or drops) the MongoDB database that `make demo`
// backs up when a MongoDB URI is given: training-run metrics of a few
// drone agents, with an index. Usage:
//
//	demoseed -uri-file FILE -db NAME [-docs N] [-drop]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	uriFile := flag.String("uri-file", "", "file holding the mongodb:// URI")
	db := flag.String("db", "", "database to fill or drop")
	docs := flag.Int("docs", 2000, "documents to insert")
	drop := flag.Bool("drop", false, "drop the database instead")
	flag.Parse()
	if err := run(*uriFile, *db, *docs, *drop); err != nil {
		fmt.Fprintln(os.Stderr, "demoseed:", err)
		os.Exit(1)
	}
}

func run(uriFile, db string, n int, drop bool) error {
	if uriFile == "" || db == "" {
		return fmt.Errorf("-uri-file and -db are required")
	}
	raw, err := os.ReadFile(uriFile)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(strings.TrimSpace(string(raw))))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer client.Disconnect(context.Background())
	d := client.Database(db)
	if drop {
		return d.Drop(ctx)
	}
	runs := d.Collection("training_runs")
	batch := make([]any, 0, 500)
	for i := range n {
		batch = append(batch, bson.D{
			{Key: "agent", Value: fmt.Sprintf("drone-%d", i%7)},
			{Key: "episode", Value: i},
			{Key: "reward", Value: float64(i%97) / 9.7},
			{Key: "fires_out", Value: int32(i % 5)},
			{Key: "at", Value: time.Unix(1_790_000_000+int64(i)*60, 0).UTC()},
		})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := runs.InsertMany(ctx, batch); err != nil {
				return fmt.Errorf("insert: %w", err)
			}
			batch = batch[:0]
		}
	}
	_, err = runs.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "agent", Value: 1}, {Key: "episode", Value: 1}}})
	if err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	_, err = d.Collection("experiments").InsertOne(ctx, bson.D{{Key: "name", Value: "ppo-baseline"}, {Key: "lr", Value: 3e-4}})
	return err
}
