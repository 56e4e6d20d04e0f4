// Command stackhelper stands in for every service of the rendered Compose
// stack in fireops' end-to-end deploy test: the test machine cannot pull
// images, so the test builds an image FROM scratch holding only this static
// binary and renders the stack with it (docs/deploy.md, "Tests").
//
//	stackhelper serve -listen :9090    serve /health, /-/healthy, /metrics and /
//	stackhelper health URL             exit 0 when GET URL answers 200 (healthchecks)
//
// A scratch image has no shell, so the healthchecks run this binary with
// the health argument. serve exits on SIGTERM or SIGINT at once: as PID 1
// of a container it would otherwise ignore them and `docker compose down`
// would wait for its timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: stackhelper serve [-listen ADDR] | stackhelper health URL")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "health":
		err = health(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stackhelper:", err)
		os.Exit(1)
	}
}

// serve answers health and metrics requests until SIGTERM or SIGINT.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _ := os.Hostname()
	start := time.Now()
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }
	mux.HandleFunc("/health", ok)
	mux.HandleFunc("/-/healthy", ok)
	mux.HandleFunc("/-/ready", ok)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP stackhelper_up 1 while the helper serves.\n# TYPE stackhelper_up gauge\nstackhelper_up{host=%q} 1\n", host)
		fmt.Fprintf(w, "# HELP stackhelper_uptime_seconds Seconds since the helper started.\n# TYPE stackhelper_uptime_seconds gauge\nstackhelper_uptime_seconds %.0f\n", time.Since(start).Seconds())
	})
	mux.HandleFunc("/", ok)
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// health exits non-zero unless GET url answers 200 within 3 seconds.
func health(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: stackhelper health URL")
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", args[0], resp.StatusCode)
	}
	return nil
}
