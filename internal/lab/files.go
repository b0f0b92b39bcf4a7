package lab

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// WriteRandomFile writes size random bytes to path (mode 0644, readable by
// the FTP and TFTP daemons) and returns their SHA-256 in hex.
func WriteRandomFile(path string, size int64) (string, error) {
	if size < 0 {
		return "", fmt.Errorf("lab: negative file size %d", size)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		f.Close()
		return "", fmt.Errorf("lab: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	// The umask may have narrowed the mode; the daemons need world-readable.
	if err := os.Chmod(path, 0o644); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FileSHA256 returns the SHA-256 of the file at path in hex.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("lab: read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SameFile reports an error unless the files at a and b have the same
// content; the error gives both sizes and hashes.
func SameFile(a, b string) error {
	ha, err := FileSHA256(a)
	if err != nil {
		return err
	}
	hb, err := FileSHA256(b)
	if err != nil {
		return err
	}
	if ha != hb {
		return fmt.Errorf("lab: %s (%s, %s) and %s (%s, %s) differ",
			a, sizeOf(a), ha[:12], b, sizeOf(b), hb[:12])
	}
	return nil
}

func sizeOf(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d bytes", fi.Size())
}
