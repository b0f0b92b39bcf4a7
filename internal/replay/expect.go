package replay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Expectation is one line of an expected-verdicts file: packets First to
// Last (1-based, inclusive) get Verdict, and, when Reason is not empty, a
// reason that starts with Reason.
type Expectation struct {
	First, Last int
	Verdict     string // "accept" or "drop"
	Reason      string
	Line        int
}

// ParseExpectFile reads an expected-verdicts file. Its format, one entry a
// line, '#' starting a comment:
//
//	12        accept
//	13-40     accept
//	41        drop   no session or expectation
//	*         accept
//
// A packet number or range, the verdict, and optionally the start of the
// reason. A '*' line gives the verdict of every packet not listed; without
// one, packets not listed are not checked.
func ParseExpectFile(path string) ([]Expectation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseExpect(f, path)
}

// ParseExpect reads expected verdicts from r; name is used in errors.
func ParseExpect(r io.Reader, name string) ([]Expectation, error) {
	var out []Expectation
	var errs []string
	unshown := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxExpectLine)
	n := 1
	for ; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		bad := func(format string, a ...any) {
			if len(errs) == maxExpectErrors {
				unshown++
				return
			}
			errs = append(errs, fmt.Sprintf("%s:%d: %s", name, n, fmt.Sprintf(format, a...)))
		}
		if len(fields) < 2 {
			bad("expected a packet number or range and a verdict, found %q", strings.TrimSpace(line))
			continue
		}
		e := Expectation{Line: n, Reason: strings.Join(fields[2:], " ")}
		switch v := fields[1]; v {
		case "accept", "drop":
			e.Verdict = v
		default:
			bad("expected verdict accept or drop, found %q", v)
			continue
		}
		if fields[0] == "*" {
			e.First, e.Last = 0, 0
		} else {
			lo, hi, ok := strings.Cut(fields[0], "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if ok {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || a < 1 || b < a {
				bad("expected a packet number (from 1) or range N-M, found %q", fields[0])
				continue
			}
			e.First, e.Last = a, b
		}
		out = append(out, e)
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, n, maxExpectLine)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if unshown > 0 {
		errs = append(errs, fmt.Sprintf("%s: %d more errors not shown", name, unshown))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// Bounds on an expected-verdicts file: the longest line, and the errors
// reported (the rest are counted).
const (
	maxExpectLine   = 1 << 20
	maxExpectErrors = 100
)

// expectIndex finds the expectation that applies to a packet in time
// independent of the file's length: a file written by --write-expect has a
// line per packet.
type expectIndex struct {
	exp    []Expectation
	single map[int]int // packet number → index of the last line naming it alone
	ranges []int       // indexes of the lines with a range
	star   int         // index of the last '*' line, or -1
}

func newExpectIndex(exp []Expectation) *expectIndex {
	x := &expectIndex{exp: exp, single: make(map[int]int), star: -1}
	for i, e := range exp {
		switch {
		case e.First == 0:
			x.star = i
		case e.First == e.Last:
			x.single[e.First] = i
		default:
			x.ranges = append(x.ranges, i)
		}
	}
	return x
}

// lookup returns the expectation that applies to packet n, or nil. Later
// lines override earlier ones; '*' applies only when no line names n.
func (x *expectIndex) lookup(n int) *Expectation {
	best := -1
	if i, ok := x.single[n]; ok {
		best = i
	}
	for _, i := range x.ranges {
		if i > best && n >= x.exp[i].First && n <= x.exp[i].Last {
			best = i
		}
	}
	if best < 0 {
		best = x.star
	}
	if best < 0 {
		return nil
	}
	return &x.exp[best]
}

// packets names the packets an expectation with a number or range is for:
// "packet 12", "packets 13-40".
func (e *Expectation) packets() string {
	if e.First == e.Last {
		return fmt.Sprintf("packet %d", e.First)
	}
	return fmt.Sprintf("packets %d-%d", e.First, e.Last)
}

// ExpectFile is an expected-verdicts file being written (Options.
// WriteExpect). It is written to a temporary file in the same directory
// and appears at its path only when Commit is called: a replay that stops
// half-way leaves neither a partial file that looks complete nor a
// damaged older one.
type ExpectFile struct {
	path string
	f    *os.File
	w    *bufio.Writer
}

// CreateExpectFile starts writing the expected-verdicts file at path. It
// fails at once when the file could not be created there.
func CreateExpectFile(path string) (*ExpectFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // pe names the temporary file
		}
		return nil, fmt.Errorf("cannot create %s: %w", path, err)
	}
	// os.CreateTemp makes the file private; a golden file is for sharing.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("cannot create %s: %w", path, err)
	}
	return &ExpectFile{path: path, f: f, w: bufio.NewWriter(f)}, nil
}

// Write adds p to the file; errors are also returned by Commit.
func (x *ExpectFile) Write(p []byte) (int, error) { return x.w.Write(p) }

// Commit finishes the file and moves it to its path, replacing any file
// there.
func (x *ExpectFile) Commit() error {
	err := x.w.Flush()
	if err == nil {
		err = x.f.Sync()
	}
	if cerr := x.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(x.f.Name(), x.path)
	}
	if err != nil {
		os.Remove(x.f.Name())
		return fmt.Errorf("writing %s: %w", x.path, err)
	}
	return nil
}

// Discard drops what was written; the file at the path, if any, stays as
// it was.
func (x *ExpectFile) Discard() {
	x.f.Close()
	os.Remove(x.f.Name())
}
