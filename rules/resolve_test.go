package rules

import (
	"testing"
	"time"
)

// TestLimitDefaults checks that the limits a file leaves out take their
// defaults, moved only as far as the limits it sets require.
func TestLimitDefaults(t *testing.T) {
	d := DefaultLimits()
	tests := []struct {
		body string
		want Limits
	}{
		{"", d},
		{"sessions 100", Limits{100, 100, 100, 100, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"sessions 5000", Limits{5000, 5000, 5000, 512, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"sessions 100 half-open-per-host 20", Limits{100, 100, 100, 20, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"sessions 100 half-open 50", Limits{100, 100, 50, 50, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"half-open 50", Limits{d.Sessions, d.SessionsPerHost, 50, 50, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"half-open 300000", Limits{300000, d.SessionsPerHost, 300000, 512, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"half-open-per-host 9000", Limits{d.Sessions, d.SessionsPerHost, 9000, 9000, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"half-open-per-host 300000", Limits{300000, d.SessionsPerHost, 300000, 300000, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"sessions 100 half-open 100 half-open-per-host 100", Limits{100, 100, 100, 100, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"expectations 10 ftp-line 128", Limits{d.Sessions, d.SessionsPerHost, d.HalfOpen, d.HalfOpenPerHost, 10, 10, 128}},
		{"sessions 10 expectations 100", Limits{10, 10, 10, 10, 100, 100, d.FTPLine}}, // expectations are not bound by sessions
		{"sessions-per-host 50", Limits{d.Sessions, 50, d.HalfOpen, d.HalfOpenPerHost, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"sessions-per-host 300000", Limits{300000, 300000, d.HalfOpen, d.HalfOpenPerHost, d.Expectations, d.ExpectationsPerHost, d.FTPLine}},
		{"expectations-per-host 8000", Limits{d.Sessions, d.SessionsPerHost, d.HalfOpen, d.HalfOpenPerHost, 8000, 8000, d.FTPLine}},
		{"expectations 100 expectations-per-host 10", Limits{d.Sessions, d.SessionsPerHost, d.HalfOpen, d.HalfOpenPerHost, 100, 10, d.FTPLine}},
	}
	for _, tc := range tests {
		rs := mustParse(t, "interface wan eth0\nin on wan default deny { }\nlimits { "+tc.body+" }\n")
		if rs.Limits != tc.want {
			t.Errorf("limits { %s }: got %+v, want %+v", tc.body, rs.Limits, tc.want)
		}
	}
}

// TestLimitErrors checks that only limits the file sets conflict, that the
// error stands at the key that must be the smaller and quotes both values
// as written, and that a second limits block is refused without being
// compared with the first.
func TestLimitErrors(t *testing.T) {
	const head = "interface wan eth0\nin on wan default deny { }\n"
	tests := []struct{ src, want string }{
		{"limits { sessions 100 half-open 200 }", "3:23: half-open 200 exceeds sessions 100 (set at 3:10)"},
		{"limits { half-open 0100 sessions 99 }", "3:10: half-open 0100 exceeds sessions 99 (set at 3:25)"},
		{"limits { half-open 10 half-open-per-host 20 }", "3:23: half-open-per-host 20 exceeds half-open 10 (set at 3:10)"},
		{"limits { sessions 10 half-open-per-host 20 }", "3:22: half-open-per-host 20 exceeds sessions 10 (set at 3:10)"},
		{"limits { sessions 10 sessions-per-host 20 }", "3:22: sessions-per-host 20 exceeds sessions 10 (set at 3:10)"},
		{"limits { expectations-per-host 20 expectations 10 }", "3:10: expectations-per-host 20 exceeds expectations 10 (set at 3:35)"},
		{"limits {\n    sessions 1000\n    half-open 200\n    half-open-per-host 300\n}", "6:5: half-open-per-host 300 exceeds half-open 200 (set at 5:5)"},
		// Both conflicts are reported, the one through half-open not again.
		{"limits { sessions 10 half-open 20 half-open-per-host 30 }",
			"3:22: half-open 20 exceeds sessions 10 (set at 3:10)\ntest.rules:3:35: half-open-per-host 30 exceeds half-open 20 (set at 3:22)"},
		// A bad value has its own error and is compared with nothing.
		{"limits { sessions 0 half-open 200 }", "3:19: sessions 0 out of range (1 to 67108864)"},
		{"limits { sessions lots half-open 200 }", `3:19: expected number, found "lots"`},
		{"limits { half-open-per-host many sessions 10 half-open 20 }", `3:29: expected number, found "many"` + "\ntest.rules:3:46: half-open 20 exceeds sessions 10 (set at 3:34)"},
		// A key set twice: the first value counts.
		{"limits { sessions 10 sessions 5 half-open 8 }", "3:22: sessions set twice (first at 3:10)"},
		// A second block is an error; its values are checked on their own.
		{"limits { sessions 10 }\nlimits { sessions 5 half-open 8 }", "4:1: second limits block (the first is at line 3)"},
		{"limits { sessions 10 }\nlimits { half-open 0 }", "4:1: second limits block (the first is at line 3)\ntest.rules:4:20: half-open 0 out of range (1 to 67108864)"},
		{"ftp { min-data-port 2000 }\nftp { min-data-port 0 }", "4:1: second ftp block (the first is at line 3)\ntest.rules:4:21: expected port number 1 to 65535, found \"0\""},
	}
	for _, tc := range tests {
		_, err := Parse("test.rules", []byte(head+tc.src))
		if err == nil || err.Error() != "test.rules:"+tc.want {
			t.Errorf("%q:\n got %v\nwant test.rules:%s", tc.src, err, tc.want)
		}
	}
}

// TestSecondBlockIgnored checks that a second settings block changes
// nothing, even with valid values (the file is refused, but the values in
// force must not depend on it).
func TestSecondBlockIgnored(t *testing.T) {
	p := newParser("test.rules", []byte(`limits { sessions 10 }
limits { sessions 20 half-open 5 }
timeouts { udp-idle 1m }
timeouts { udp-idle 2m }
ftp { min-data-port 2000 }
ftp { active-source-port any }
`))
	p.parse()
	p.checkLimits()
	if len(p.errs) != 3 {
		t.Fatalf("errors: %v", p.errs)
	}
	if p.limits.Sessions != 10 || p.limits.HalfOpen != 10 || p.timeouts.UDPIdle != time.Minute || p.ftp != (FTPOptions{2000, false}) {
		t.Errorf("second blocks applied: %+v %+v %+v", p.limits, p.timeouts, p.ftp)
	}
}
