package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// inspectdBin is the binary built by TestMain; inspectdErr says why there
// is none.
var (
	inspectdBin string
	inspectdErr error
)

// repoRoot is the module root, where examples/ and cmd/ live.
const repoRoot = ".."

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "inspectd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Geteuid() == 0 && wantFirewall("inspectd") {
		inspectdBin, inspectdErr = buildInspectd(dir)
	} else {
		inspectdErr = errors.New("not built (not root, or inspectd not in E2E_FIREWALLS)")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildInspectd(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(repoRoot, "cmd", "inspectd")); err != nil {
		return "", errors.New("cmd/inspectd does not exist yet")
	}
	bin := filepath.Join(dir, "inspectd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/inspectd")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/inspectd: %v\n%s", err, out)
	}
	return bin, nil
}

// requireInspectd fails the test when the inspectd binary could not be built.
func requireInspectd(t *testing.T) string {
	t.Helper()
	if inspectdBin == "" {
		t.Fatalf("inspectd binary not available: %v", inspectdErr)
	}
	return inspectdBin
}
