// Command tcpproxy stands in for the stack's MongoDB container in the
// --stop-stack test: it forwards every TCP connection it accepts on the
// first address to the second (the test's MongoDB server), until SIGTERM.
// The test runs it FROM a zero-layer image that holds only this static
// binary (no image can be pulled on the test machine).
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: tcpproxy LISTEN-ADDR TARGET-ADDR")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpproxy:", err)
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "tcpproxy:", err)
			os.Exit(1)
		}
		go forward(c, os.Args[2])
	}
}

// forward copies both ways between c and a new connection to target.
func forward(c net.Conn, target string) {
	defer c.Close()
	u, err := net.Dial("tcp", target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpproxy:", err)
		return
	}
	defer u.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(u, c)
		u.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, u)
	c.(*net.TCPConn).CloseWrite()
	<-done
}
