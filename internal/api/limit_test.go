package api

import (
	"errors"
	"net"
	"testing"
	"time"
)

func TestLimitListener(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(tl, 2)
	defer ln.Close()
	for range 4 {
		c, err := net.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	accepted := make(chan net.Conn)
	accept := func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}
	go accept()
	a := <-accepted
	go accept()
	<-accepted
	go accept()
	select {
	case <-accepted:
		t.Fatal("accepted a third connection with two open")
	case <-time.After(100 * time.Millisecond):
	}
	a.Close()
	a.Close() // gives its place back once only
	c := <-accepted
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Error("connection without CloseWrite")
	}
	// Close ends an Accept waiting for a place.
	errc := make(chan error)
	go func() {
		_, err := ln.Accept()
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ln.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept on a closed listener: %v", err)
	}
}

type failing struct{ net.Listener }

var errAccept = errors.New("accept failed")

func (failing) Accept() (net.Conn, error) { return nil, errAccept }

func TestLimitListenerError(t *testing.T) {
	ln := LimitListener(failing{}, 1)
	for range 3 { // a failed accept gives its place back
		if _, err := ln.Accept(); err != errAccept {
			t.Fatalf("accept: %v", err)
		}
	}
}
