// Command writer stands in for a user's notebook server in the volume
// tests: it keeps rewriting files in the folder given as its argument until
// SIGTERM. The tests run it FROM a zero-layer image that holds only this
// static binary (no image can be pulled on the test machine).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	dir := "/data"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		p := filepath.Join(dir, "counter")
		if err := os.WriteFile(p+".tmp", []byte(fmt.Sprintf("%d\n", n)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			continue
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
		}
	}
}
