// Command ferretdb runs an embedded FerretDB v1 (SQLite backend) on a
// loopback address, as a MongoDB wire-protocol server for fireops's tests.
//
// It lives in its own Go module so that FerretDB's many dependencies stay
// out of the product's go.mod. scripts/test-deps.sh builds and starts it.
//
// Usage:
//
//	ferretdb -listen 127.0.0.1:27117 -dir /path/to/sqlite-dir [-log-level warn]
//
// It prints the MongoDB URI on stdout once it listens and runs until it
// receives SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27117", "TCP address to listen on")
	dir := flag.String("dir", "", "directory for the SQLite databases (required)")
	level := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	flag.Parse()

	if err := run(*listen, *dir, *level); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}

func run(listen, dir, level string) error {
	if dir == "" {
		return fmt.Errorf("-dir is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return err
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	// Telemetry: the embeddable package never creates a telemetry reporter
	// and disables (and locks) telemetry in its state itself.
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		return err
	}

	// New already listens, so the address is known.
	fmt.Println(f.MongoDBURI())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	return f.Run(ctx)
}
