package rules

// icmpTypes names the common ICMP (IPv4) types.
var icmpTypes = map[string]uint8{
	"echo-reply":              0,
	"destination-unreachable": 3,
	"unreachable":             3,
	"source-quench":           4,
	"redirect":                5,
	"echo-request":            8,
	"router-advertisement":    9,
	"router-solicitation":     10,
	"time-exceeded":           11,
	"parameter-problem":       12,
	"timestamp-request":       13,
	"timestamp-reply":         14,
}

// icmpv6Types names the common ICMPv6 types.
var icmpv6Types = map[string]uint8{
	"destination-unreachable": 1,
	"unreachable":             1,
	"packet-too-big":          2,
	"time-exceeded":           3,
	"parameter-problem":       4,
	"echo-request":            128,
	"echo-reply":              129,
	"mld-query":               130,
	"mld-report":              131,
	"mld-done":                132,
	"router-solicitation":     133,
	"router-advertisement":    134,
	"neighbor-solicitation":   135,
	"neighbor-advertisement":  136,
	"redirect":                137,
	"mld2-report":             143,
}
