package rules

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem found in a rule file, at a 1-based line and column
// (the column counts bytes).
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

// Error formats the problem as FILE:LINE:COL: MESSAGE.
func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// ErrorList is every problem found in one rule file, in file order. Parse
// returns one (as its error) whenever the file has any problem.
type ErrorList []*Error

// Error joins the messages of all errors with newlines.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// sortDedup sorts the list by position (keeping the order of errors at the
// same position) and drops exact duplicates.
func (l ErrorList) sortDedup() ErrorList {
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].Line != l[j].Line {
			return l[i].Line < l[j].Line
		}
		return l[i].Col < l[j].Col
	})
	seen := make(map[Error]bool, len(l))
	out := l[:0]
	for _, e := range l {
		if seen[*e] {
			continue
		}
		seen[*e] = true
		out = append(out, e)
	}
	return out
}
