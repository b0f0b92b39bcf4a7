package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
)

// gzipPcapBigRecord returns a gzip-compressed pcap file whose header
// declares snaplen 0xffffffff and whose one record claims (and holds) n
// bytes of zeros: a few hundred KiB on disk.
func gzipPcapBigRecord(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 0xffffffff) // snaplen
	binary.LittleEndian.PutUint32(hdr[20:], 101)        // raw IP
	zw.Write(hdr)
	rec := make([]byte, 16)
	binary.LittleEndian.PutUint32(rec[8:], uint32(n))
	binary.LittleEndian.PutUint32(rec[12:], uint32(n))
	zw.Write(rec)
	zero := make([]byte, 1<<20)
	for left := n; left > 0; left -= len(zero) {
		zw.Write(zero[:min(left, len(zero))])
	}
	zw.Close()
	return buf.Bytes()
}

// TestGzipRecordBomb: a 64 MiB record is longer than any capture tool
// writes (libpcap's and Wireshark's maximum snap length is 256 KiB), and
// gzip lets a file of ~70 KiB claim and hold it, or 4 GiB in a 4 MiB
// file. Next reports an error naming the packet without allocating the
// record; a record of 256 KiB still reads.
func TestGzipRecordBomb(t *testing.T) {
	r, err := NewReader(bytes.NewReader(gzipPcapBigRecord(t, 256<<10)), "big.pcap.gz")
	if err != nil {
		t.Fatal(err)
	}
	if f, err := r.Next(); err != nil || len(f.Data) != 256<<10 {
		t.Fatalf("a 256 KiB record: %d bytes, %v", len(f.Data), err)
	}
	r.Close()

	const n = 64 << 20
	data := gzipPcapBigRecord(t, n)
	t.Logf("gzip file: %d bytes for a %d-byte record", len(data), n)
	r, err = NewReader(bytes.NewReader(data), "bomb.pcap.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := r.Next()
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	if err == nil || !strings.Contains(err.Error(), "bomb.pcap.gz: packet 1: more than 1 MiB read for one packet") {
		t.Errorf("Next returned a %d-byte frame and error %v (allocated %d MiB); want an error naming the packet", len(f.Data), err, alloc>>20)
	}
	if alloc > 8<<20 {
		t.Errorf("Next allocated %d MiB for one record of a %d-byte file", alloc>>20, len(data))
	}
}

// TestGzipInterfaceFlood: the same amplification with pcapng interface
// descriptions. pcapgo keeps every IDB (about 1 KiB of memory each,
// counting the slice's growth) and reads all those before the first
// packet at the first Next; a 20-byte IDB compresses to almost nothing,
// so a 50 KB gzip file holds a million of them (4.7 GB allocated for a
// 200 KB file before the bound). MaxPerFrame stops it with an error naming
// the file, at a memory cost that does not grow with the file.
func TestGzipInterfaceFlood(t *testing.T) {
	shb, idb := pcapngSectionAndInterface()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(shb)
	const n = 1 << 20
	chunk := bytes.Repeat(idb, 4096)
	for i := 0; i < n; i += 4096 {
		zw.Write(chunk)
	}
	zw.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := NewReader(bytes.NewReader(buf.Bytes()), "idbs.pcapng.gz")
	if err == nil {
		_, err = r.Next()
		r.Close()
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("gzip file of %d bytes: error %v", buf.Len(), err)
	if err == nil || !strings.Contains(err.Error(), "idbs.pcapng.gz: packet 1: more than 1 MiB read") {
		t.Errorf("error %v, want one naming the file and the packet", err)
	}
	if alloc > 80<<20 {
		t.Errorf("reading a %d-byte file allocated %d MiB", buf.Len(), alloc>>20)
	}
}

// TestInterfaceFloodAcrossPackets: MaxPerFrame bounds what is read for
// one packet, and is reset after each packet, while pcapgo keeps every
// interface description of the section for good. A file that puts just
// under 1 MiB of IDBs before each of its packets passes every per-frame
// check; MaxInterfaces stops it at the first packet past the bound, with
// the memory held bounded.
func TestInterfaceFloodAcrossPackets(t *testing.T) {
	le := binary.LittleEndian
	shb, idb := pcapngSectionAndInterface()
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 20)
	epb := make([]byte, 32+len(ip)+4)
	le.PutUint32(epb[0:], 6)
	le.PutUint32(epb[4:], uint32(len(epb)))
	le.PutUint32(epb[20:], uint32(len(ip)))
	le.PutUint32(epb[24:], uint32(len(ip)))
	copy(epb[28:], ip)
	le.PutUint32(epb[len(epb)-4:], uint32(len(epb)))

	const perFrame = 45000 // 900 KB of IDBs: under MaxPerFrame
	const frames = 8
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(shb)
	chunk := bytes.Repeat(idb, perFrame)
	for range frames {
		zw.Write(chunk)
		zw.Write(epb)
	}
	zw.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := NewReader(bytes.NewReader(buf.Bytes()), "idbs.pcapng.gz")
	if err != nil {
		t.Fatal(err)
	}
	n, err := drain(r)
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(r)
	t.Logf("gzip file of %d bytes: %d packets read, then %v; %d MiB held, %d MiB allocated",
		buf.Len(), n, err, held>>20, (after.TotalAlloc-before.TotalAlloc)>>20)
	if err == nil || !strings.Contains(err.Error(), "idbs.pcapng.gz: packet 1: the section has 45000 interface descriptions") || held > 80<<20 {
		t.Errorf("a %d KB file held %d MiB after %d packets (err %v): want an error at packet 1 and bounded memory",
			buf.Len()>>10, held>>20, n, err)
	}
}

// pcapngSectionAndInterface returns a little-endian pcapng section header
// block (section length unknown) and an interface description block for
// raw IP, 20 bytes, which compresses to almost nothing.
func pcapngSectionAndInterface() (shb, idb []byte) {
	le := binary.LittleEndian
	shb = make([]byte, 28)
	le.PutUint32(shb[0:], 0x0a0d0d0a)
	le.PutUint32(shb[4:], 28)
	le.PutUint32(shb[8:], 0x1a2b3c4d)
	le.PutUint16(shb[12:], 1)
	le.PutUint64(shb[16:], 0xffffffffffffffff)
	le.PutUint32(shb[24:], 28)
	idb = make([]byte, 20)
	le.PutUint32(idb[0:], 1) // interface description block
	le.PutUint32(idb[4:], 20)
	le.PutUint16(idb[8:], 101) // raw IP
	le.PutUint32(idb[16:], 20)
	return shb, idb
}
