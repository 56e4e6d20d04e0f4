package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testenv"
	pkgmongo "github.com/firetech/fireops/pkg/source/mongo"
)

var (
	mongoOnce   sync.Once
	mongoClient *mongo.Client
	mongoErr    error
)

// testMongo returns the client of the test server, or why there is none.
func testMongo() (*mongo.Client, string, error) {
	uri := testenv.Env(testenv.EnvMongoURI)
	mongoOnce.Do(func() {
		if uri == "" {
			mongoErr = fmt.Errorf("%s is not set", testenv.EnvMongoURI)
			return
		}
		mongoClient, mongoErr = mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(5 * time.Second))
		if mongoErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			mongoErr = mongoClient.Ping(ctx, nil)
			cancel()
		}
	})
	return mongoClient, uri, mongoErr
}

// cmdTestMongo is the testscript command `testmongo` (guard the script with
// [!mongo] skip): it fills a fresh database with mongotest.Small (runs,
// events, blobs, empty), writes the server's URI into $WORK/mongo-uri
// (0600) and sets $DB to the database's name and $MONGO_URI_FILE. Every
// database whose name ends in $DB is dropped when the script ends.
func cmdTestMongo(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: testmongo")
	}
	c, uri, err := testMongo()
	if err != nil {
		ts.Fatalf("testmongo: %v (guard the script with [!mongo] skip)", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	db := "s_" + hex.EncodeToString(b)
	ts.Defer(func() {
		ctx := context.Background()
		names, _ := c.ListDatabaseNames(ctx, bson.D{})
		for _, n := range names {
			if strings.HasSuffix(n, db) {
				c.Database(n).Drop(ctx)
			}
		}
	})
	ts.Check(mongotest.SeedErr(c, db, "", mongotest.Small))
	f := filepath.Join(ts.Getenv("WORK"), "mongo-uri")
	ts.Check(os.WriteFile(f, []byte(uri+"\n"), 0o600))
	ts.Setenv("DB", db)
	ts.Setenv("MONGO_URI_FILE", f)
}

// cmdMongo is the testscript command `mongo` for checks on the test
// server:
//
//	mongo same DB1 DB2         fail unless both hold byte-identical collections
//	mongo clear DB.COLL        delete every document of a collection
//	mongo dbs PREFIX           print the databases whose name starts with PREFIX
//	mongo scratch DIR          print the restore-test scratch databases of the
//	                           snapshots in DIR (a local destination's
//	                           <host>/snapshots folder)
//	mongo proxy BYTES FILE     start a proxy to the server that cuts every
//	                           connection after BYTES bytes and then refuses
//	                           new ones (a stopped server); write its URI to
//	                           FILE (0600)
func cmdMongo(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: mongo same|clear|dbs|scratch|proxy ...")
	}
	c, uri, err := testMongo()
	ts.Check(err)
	ctx := context.Background()
	switch {
	case args[0] == "same" && len(args) == 3:
		a, err := mongotest.SortedHashes(c, args[1])
		ts.Check(err)
		b, err := mongotest.SortedHashes(c, args[2])
		ts.Check(err)
		same := len(a) > 0 && maps.Equal(a, b)
		if same == neg {
			ts.Fatalf("%s: %v\n%s: %v", args[1], a, args[2], b)
		}
	case args[0] == "clear" && len(args) == 2 && !neg:
		db, coll, _ := strings.Cut(args[1], ".")
		_, err := c.Database(db).Collection(coll).DeleteMany(ctx, bson.D{})
		ts.Check(err)
	case args[0] == "dbs" && len(args) == 2 && !neg:
		out := ts.Stdout() // clears the last command's output, also when nothing is printed
		names, err := c.ListDatabaseNames(ctx, bson.D{})
		ts.Check(err)
		names = slices.DeleteFunc(names, func(n string) bool { return !strings.HasPrefix(n, args[1]) })
		for _, n := range names {
			fmt.Fprintln(out, n)
		}
	case args[0] == "scratch" && len(args) == 2 && !neg:
		out := ts.Stdout()
		ents, err := os.ReadDir(ts.MkAbs(args[1]))
		ts.Check(err)
		names, err := c.ListDatabaseNames(ctx, bson.D{})
		ts.Check(err)
		for _, e := range ents {
			if slices.Contains(names, pkgmongo.ScratchDB(e.Name())) {
				fmt.Fprintln(out, pkgmongo.ScratchDB(e.Name()))
			}
		}
	case args[0] == "proxy" && len(args) == 3 && !neg:
		n, err := strconv.ParseInt(args[1], 10, 64)
		ts.Check(err)
		px, err := mongotest.NewProxy(mongotest.Target(uri))
		ts.Check(err)
		ts.Defer(px.Close)
		px.CutAfter(n, true)
		// A short server selection timeout: the driver retries a read once,
		// waiting that long for the server to come back.
		ts.Check(os.WriteFile(ts.MkAbs(args[2]), []byte(px.URI(uri)+"&serverSelectionTimeoutMS=1000\n"), 0o600))
	default:
		ts.Fatalf("usage: mongo same DB1 DB2 | clear DB.COLL | dbs PREFIX | scratch DIR | proxy BYTES FILE")
	}
}
