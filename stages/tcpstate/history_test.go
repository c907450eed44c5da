package tcpstate

import (
	"fmt"
	"testing"
	"unsafe"
)

// TestHistoryStringsAreSharedAndBounded: a history met before comes back
// as the same string, and the memory of them stays within its cap.
func TestHistoryStringsAreSharedAndBounded(t *testing.T) {
	var a Analyzer
	first := a.history([]byte("ShADadFf"))
	again := a.history([]byte("ShADadFf"))
	if first != "ShADadFf" || unsafe.StringData(first) != unsafe.StringData(again) {
		t.Fatalf("%q and %q are not one string", first, again)
	}
	for i := range 3 * maxHistories {
		h := []byte(fmt.Sprintf("S%dF", i))
		if got := a.history(h); got != string(h) {
			t.Fatalf("history %q came back as %q", h, got)
		}
	}
	if len(a.histories) != maxHistories {
		t.Fatalf("%d histories kept, want the cap %d", len(a.histories), maxHistories)
	}
}
