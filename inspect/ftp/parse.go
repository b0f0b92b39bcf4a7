package ftp

import (
	"bytes"
	"net/netip"
)

// is reports whether b equals the upper-case ASCII word w, ignoring case
// (FTP commands are case-insensitive, RFC 959 section 5.3).
func is(b []byte, w string) bool {
	if len(b) != len(w) {
		return false
	}
	for i := range len(b) {
		if b[i]&^0x20 != w[i] {
			return false
		}
	}
	return true
}

// isCode reports whether b (three bytes) is a reply code: a digit 1-5
// followed by two digits (RFC 959 section 4.2).
func isCode(b []byte) bool {
	return b[0] >= '1' && b[0] <= '5' && isDigit(b[1]) && isDigit(b[2])
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// splitCommand splits a command line into its verb (the bytes before the
// first space, which must start the line) and its argument with
// surrounding spaces removed.
func splitCommand(line []byte) (verb, arg []byte) {
	i := 0
	for i < len(line) && line[i] != ' ' {
		i++
	}
	verb, arg = line[:i], line[i:]
	for len(arg) > 0 && arg[0] == ' ' {
		arg = arg[1:]
	}
	for len(arg) > 0 && arg[len(arg)-1] == ' ' {
		arg = arg[:len(arg)-1]
	}
	return verb, arg
}

// isHTTP reports whether a client line split into verb and arg is HTTP: a
// request line ("POST /x HTTP/1.1": a method of capital letters, a
// target, a version) or a header line ("Host: ..."). No FTP command word
// ends in a colon (RFC 959 section 5.3.1: letters only).
func isHTTP(verb, arg []byte) bool {
	if len(verb) > 1 && verb[len(verb)-1] == ':' {
		return true
	}
	for _, c := range verb {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	sp := bytes.LastIndexByte(arg, ' ')
	if sp <= 0 || bytes.IndexByte(arg[:sp], ' ') >= 0 {
		return false // not "target version"
	}
	v := arg[sp+1:]
	return len(v) == len("HTTP/1.1") && string(v[:5]) == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7])
}

// number parses a decimal number of one to three digits no greater than
// 255 at the start of b; it returns the value and the bytes consumed, or
// 0, 0 when b does not start with one.
func number(b []byte) (v, n int) {
	for n < len(b) && n < 4 && isDigit(b[n]) {
		v = v*10 + int(b[n]-'0')
		n++
	}
	if n == 0 || n > 3 || v > 255 {
		return 0, 0
	}
	return v, n
}

// sixNumbers parses "h1,h2,h3,h4,p1,p2" at the start of b (RFC 959 host
// and port numbers) and returns the address, the port and the bytes
// consumed; n is 0 when b does not start with six such numbers.
func sixNumbers(b []byte) (addr netip.Addr, port uint16, n int) {
	var v [6]byte
	for i := range 6 {
		if i > 0 {
			if n >= len(b) || b[n] != ',' {
				return netip.Addr{}, 0, 0
			}
			n++
		}
		x, m := number(b[n:])
		if m == 0 {
			return netip.Addr{}, 0, 0
		}
		v[i] = byte(x)
		n += m
	}
	return netip.AddrFrom4([4]byte{v[0], v[1], v[2], v[3]}), uint16(v[4])<<8 | uint16(v[5]), n
}

// parsePort parses a PORT argument: exactly six numbers.
func parsePort(arg []byte) (netip.Addr, uint16, bool) {
	addr, port, n := sixNumbers(arg)
	if n == 0 || n != len(arg) || port == 0 {
		return netip.Addr{}, 0, false
	}
	return addr, port, true
}

// parse227 finds the host and port numbers in the text of a 227 reply.
// RFC 1123 section 4.1.2.6 says the format is not standardised and a
// client must scan for the numbers, which may or may not be in
// parentheses: the first run of digits that starts six comma-separated
// numbers is taken, and it must not run on into more digits.
func parse227(text []byte) (netip.Addr, uint16, bool) {
	for i := 0; i < len(text); i++ {
		if !isDigit(text[i]) || (i > 0 && isDigit(text[i-1])) {
			continue
		}
		addr, port, n := sixNumbers(text[i:])
		if n == 0 {
			continue
		}
		if j := i + n; (j < len(text) && (isDigit(text[j]) || text[j] == ',')) || port == 0 {
			return netip.Addr{}, 0, false
		}
		return addr, port, true
	}
	return netip.Addr{}, 0, false
}

// parse229 finds the port in the text of a 229 reply, which RFC 2428
// section 3 fixes as "(<d><d><d><tcp-port><d>)" with <d> one printable
// delimiter character.
func parse229(text []byte) (uint16, bool) {
	i := 0
	for i < len(text) && text[i] != '(' {
		i++
	}
	b := text[min(i+1, len(text)):]
	if len(b) < 6 {
		return 0, false
	}
	d := b[0]
	if !delimiter(d) || b[1] != d || b[2] != d {
		return 0, false
	}
	port, n := portNumber(b[3:])
	if n == 0 || 3+n+1 >= len(b) || b[3+n] != d || b[3+n+1] != ')' {
		return 0, false
	}
	return port, true
}

// delimiter reports whether c may delimit EPRT and EPSV fields (RFC 2428:
// ASCII 33-126; digits are refused so the fields stay unambiguous).
func delimiter(c byte) bool { return c >= 33 && c <= 126 && !isDigit(c) }

// portNumber parses a decimal TCP port 1-65535 of up to five digits at
// the start of b and returns it and the bytes consumed (0 when none).
func portNumber(b []byte) (uint16, int) {
	v, n := 0, 0
	for n < len(b) && isDigit(b[n]) {
		if n == 5 {
			return 0, 0
		}
		v = v*10 + int(b[n]-'0')
		n++
	}
	if n == 0 || v == 0 || v > 65535 {
		return 0, 0
	}
	return uint16(v), n
}

// parseEPRT parses an EPRT argument "<d><net-prt><d><net-addr><d><tcp-port><d>"
// (RFC 2428 section 2). fam is '1' (IPv4) or '2' (IPv6) and the address
// is of that family, without a zone.
func parseEPRT(arg []byte) (fam byte, addr netip.Addr, port uint16, ok bool) {
	if len(arg) < 7 || !delimiter(arg[0]) {
		return 0, netip.Addr{}, 0, false
	}
	d := arg[0]
	fam = arg[1]
	if (fam != '1' && fam != '2') || arg[2] != d {
		return 0, netip.Addr{}, 0, false
	}
	rest := arg[3:]
	i := 0
	for i < len(rest) && rest[i] != d {
		i++
	}
	if i == len(rest) || i > len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255") {
		return 0, netip.Addr{}, 0, false
	}
	addr, err := netip.ParseAddr(string(rest[:i]))
	if err != nil || addr.Zone() != "" || addr.Is4() != (fam == '1') {
		return 0, netip.Addr{}, 0, false
	}
	rest = rest[i+1:]
	port, n := portNumber(rest)
	if n == 0 || n+1 != len(rest) || rest[n] != d {
		return 0, netip.Addr{}, 0, false
	}
	return fam, addr, port, true
}
