package users

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/firetech/fireops/pkg/exitcode"
)

// wireServer speaks enough of MongoDB's wire protocol for the Go driver:
// the handshake (hello over OP_QUERY or OP_MSG), ping and endSessions, and
// every other command through a fakeMongo. It lets the accounts' commands
// and answers travel through the real driver, encoded as on a real
// server.
type wireServer struct {
	ln   net.Listener
	mu   sync.Mutex
	fake *fakeMongo
}

func newWireServer(t *testing.T, fake *fakeMongo) *wireServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &wireServer{ln: ln, fake: fake}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *wireServer) uri() string {
	return "mongodb://root:r00t-pw@" + s.ln.Addr().String() + "/?directConnection=true&authMechanism=PLAIN"
}

func helloDoc() bson.D {
	return bson.D{
		{Key: "helloOk", Value: true}, {Key: "isWritablePrimary", Value: true}, {Key: "ismaster", Value: true},
		{Key: "maxBsonObjectSize", Value: int32(16 << 20)}, {Key: "maxMessageSizeBytes", Value: int32(48 << 20)},
		{Key: "maxWriteBatchSize", Value: int32(100000)}, {Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
		{Key: "logicalSessionTimeoutMinutes", Value: int32(30)}, {Key: "connectionId", Value: int32(1)},
		{Key: "minWireVersion", Value: int32(0)}, {Key: "maxWireVersion", Value: int32(21)},
		{Key: "ok", Value: 1.0},
	}
}

func (s *wireServer) serve(c net.Conn) {
	defer c.Close()
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(hdr[0:4]))
		msg := make([]byte, n-16)
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		reqID := binary.LittleEndian.Uint32(hdr[4:8])
		var reply []byte
		switch binary.LittleEndian.Uint32(hdr[12:16]) {
		case 2004: // OP_QUERY: the handshake's hello; answered by OP_REPLY
			doc, _ := bson.Marshal(helloDoc())
			reply = binary.LittleEndian.AppendUint32(nil, 0)   // flags
			reply = binary.LittleEndian.AppendUint64(reply, 0) // cursor
			reply = binary.LittleEndian.AppendUint32(reply, 0) // starting from
			reply = binary.LittleEndian.AppendUint32(reply, 1) // documents
			reply = append(reply, doc...)
			s.send(c, reqID, 1, reply)
		case 2013: // OP_MSG: flags, then the body section
			var cmd bson.D
			if err := bson.Unmarshal(msg[5:], &cmd); err != nil {
				return
			}
			doc, _ := bson.Marshal(s.answer(cmd))
			reply = binary.LittleEndian.AppendUint32(nil, 0)
			reply = append(reply, 0)
			reply = append(reply, doc...)
			s.send(c, reqID, 2013, reply)
		default:
			return
		}
	}
}

func (s *wireServer) answer(cmd bson.D) any {
	var db string
	var args bson.D
	for _, e := range cmd {
		switch {
		case e.Key == "$db":
			db, _ = e.Value.(string)
		case strings.HasPrefix(e.Key, "$") || e.Key == "lsid":
		default:
			args = append(args, e)
		}
	}
	switch args[0].Key {
	case "hello", "isMaster", "ismaster":
		return helloDoc()
	case "ping", "endSessions":
		return bson.D{{Key: "ok", Value: 1.0}}
	case "saslStart": // PLAIN: one step
		return bson.D{{Key: "conversationId", Value: int32(1)}, {Key: "done", Value: true}, {Key: "payload", Value: bson.Binary{}}, {Key: "ok", Value: 1.0}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, err := s.fake.RunCommand(context.Background(), db, args)
	if ce, ok := err.(mongo.CommandError); ok {
		return bson.D{{Key: "ok", Value: 0.0}, {Key: "code", Value: ce.Code}, {Key: "codeName", Value: ce.Name}, {Key: "errmsg", Value: ce.Message}}
	}
	return raw
}

func (s *wireServer) send(c net.Conn, responseTo, op uint32, body []byte) {
	h := binary.LittleEndian.AppendUint32(nil, uint32(16+len(body)))
	h = binary.LittleEndian.AppendUint32(h, 1)
	h = binary.LittleEndian.AppendUint32(h, responseTo)
	h = binary.LittleEndian.AppendUint32(h, op)
	c.Write(append(h, body...))
}

// TestMongoAccountsThroughTheDriver runs the accounts' life cycle through
// DialMongo, the real driver and the wire protocol: the commands, roles
// and answers as a MongoDB server sends and reads them; and a driver error
// that would quote the root URI never does.
func TestMongoAccountsThroughTheDriver(t *testing.T) {
	t.Parallel()
	fake := newFakeMongo()
	srv := newWireServer(t, fake)
	server, err := DialMongo(srv.uri())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	acc := &MongoAccounts{Server: server, Dir: dir}

	res, err := acc.Ensure(ctx, "maria", EnsureOptions{})
	if err != nil || res.Action != MongoCreated {
		t.Fatalf("first approve: %+v %v", res, err)
	}
	pw := uriPassword(t, filepath.Join(dir, "user_maria"), "user_maria")
	if fake.users["user_maria"][0].Value != pw {
		t.Errorf("the server got password %v, the URI file has %s", fake.users["user_maria"][0].Value, pw)
	}
	if res, err := acc.Ensure(ctx, "maria", EnsureOptions{}); err != nil || res.Action != MongoKept {
		t.Fatalf("second approve: %+v %v", res, err)
	}
	fake.dbs = []string{"user_maria"}
	if res, err := acc.Remove(ctx, "maria"); err != nil || res.Action != MongoRemoved || !res.DatabaseKept {
		t.Fatalf("delete: %+v %v", res, err)
	}
	if _, ok := fake.users["user_maria"]; ok || len(fake.dbs) != 1 {
		t.Errorf("after delete: users %v, databases %v", fake.users, fake.dbs)
	}
	if _, err := os.Stat(filepath.Join(dir, "user_maria")); err == nil {
		t.Error("the URI file is still there")
	}
	// The kept database carries the mark; a new maria is refused it.
	if _, err := acc.Ensure(ctx, "maria", EnsureOptions{}); exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), `"maria" deleted on `) {
		t.Errorf("approve of a new maria: %v", err)
	}
	// A server error arrives with its code: a second delete finds no user.
	if res, err := acc.Remove(ctx, "maria"); err != nil || res.Action != MongoAbsent {
		t.Fatalf("second delete: %+v %v", res, err)
	}

	// A server that does not answer: the error never holds the password.
	srv.ln.Close()
	down, err := DialMongo(strings.Replace(srv.uri(), "directConnection=true", "directConnection=true&serverSelectionTimeoutMS=300", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close(context.Background())
	_, err = (&MongoAccounts{Server: down, Dir: dir}).Ensure(ctx, "maria", EnsureOptions{})
	if err == nil || strings.Contains(err.Error(), "r00t-pw") {
		t.Errorf("server down: %v", err)
	}
}
