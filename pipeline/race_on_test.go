//go:build race

package pipeline

// raceEnabled: built with -race, whose sync.Pool drops about a quarter of
// what is put in it on purpose, so that misuse shows.
const raceEnabled = true
