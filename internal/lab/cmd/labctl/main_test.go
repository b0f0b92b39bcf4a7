package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/internal/lab"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"bogus"}, {"down"}, {"up", "-nope"}} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("labctl %q succeeded", args)
		}
	}
}

func TestUpDown(t *testing.T) {
	lab.Require(t)
	var out bytes.Buffer
	root := t.TempDir()
	// Owned by this process: a lab a failed run leaves behind is swept
	// once it has exited.
	if err := run([]string{"up", "-prefix", "ilabctl", "-owner-pid", strconv.Itoa(os.Getpid()), "-dir", t.TempDir(),
		"-ftp-root", root, "-tftp-root", root}, &out); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for line := range strings.Lines(out.String()) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		vars[k] = v
	}
	id := vars["LAB_ID"]
	if id == "" || vars["EDGE_NS"] != id+"-edge" {
		t.Fatalf("up printed %q", out.String())
	}
	t.Cleanup(func() { _ = lab.Attach(id, "").Close() })
	if _, err := os.Stat(lab.NS(vars["SERVER_NS"]).Path()); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"down", "-id", id}, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lab.NS(vars["SERVER_NS"]).Path()); !os.IsNotExist(err) {
		t.Fatalf("server namespace still there: %v", err)
	}
	if err := run([]string{"sweep", "-prefix", "ilabctl"}, &out); err != nil {
		t.Fatal(err)
	}
}
