package rules

import "strconv"

// tokKind is the kind of a lexical token.
type tokKind uint8

const (
	tokEOF     tokKind = iota
	tokNewline         // end of a line
	tokWord            // keyword, name, address, number, range, duration
	tokRef             // @NAME (text is NAME, possibly empty)
	tokLBrace          // {
	tokRBrace          // }
	tokBang            // !
	tokComma           // ,
)

// token is one lexical token. off and end delimit its source bytes.
type token struct {
	kind      tokKind
	text      string
	line, col int
	off, end  int
}

// describe renders the token for "found X" in error messages.
func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "end of file"
	case tokNewline:
		return "end of line"
	case tokRef:
		return strconv.Quote("@" + t.text)
	case tokLBrace:
		return `"{"`
	case tokRBrace:
		return `"}"`
	case tokBang:
		return `"!"`
	case tokComma:
		return `","`
	}
	return strconv.Quote(t.text)
}

// is reports whether t is the word w.
func (t token) is(w string) bool { return t.kind == tokWord && t.text == w }

// isDelim reports whether c ends a word.
func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '\v', '\f', '{', '}', '!', '@', '#', ',':
		return true
	}
	return false
}

// lex splits src into tokens. It never fails: every byte belongs to some
// token, and bytes that make no sense end up in words that the parser
// rejects. Consecutive newlines (and comment-only lines) give one newline
// token each, which the parser skips where blank lines are allowed.
func lex(src []byte) []token {
	toks := make([]token, 0, len(src)/4+1)
	line, lineStart := 1, 0
	i := 0
	for i < len(src) {
		c := src[i]
		col := i - lineStart + 1
		switch {
		case c == '\n':
			toks = append(toks, token{kind: tokNewline, line: line, col: col, off: i, end: i + 1})
			i++
			line, lineStart = line+1, i
		case c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '{' || c == '}' || c == '!' || c == ',':
			k := tokComma
			switch c {
			case '{':
				k = tokLBrace
			case '}':
				k = tokRBrace
			case '!':
				k = tokBang
			}
			toks = append(toks, token{kind: k, text: string(c), line: line, col: col, off: i, end: i + 1})
			i++
		case c == '@':
			j := i + 1
			for j < len(src) && !isDelim(src[j]) {
				j++
			}
			toks = append(toks, token{kind: tokRef, text: string(src[i+1 : j]), line: line, col: col, off: i, end: j})
			i = j
		default:
			j := i
			for j < len(src) && !isDelim(src[j]) {
				j++
			}
			toks = append(toks, token{kind: tokWord, text: string(src[i:j]), line: line, col: col, off: i, end: j})
			i = j
		}
	}
	toks = append(toks, token{kind: tokEOF, line: line, col: len(src) - lineStart + 1, off: len(src), end: len(src)})
	return toks
}
