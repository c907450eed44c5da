// Command genman writes pktpipe's man page, pktpipe(1), in roff, from the
// command's own --help, so the page and the CLI cannot drift apart:
//
//	go run ./deploy/genman bin/pktpipe > bin/pktpipe.1
//
// The help's first line becomes NAME, "Usage:" SYNOPSIS, the paragraphs
// DESCRIPTION, "Examples:" EXAMPLES and the flag list OPTIONS; FILES and
// SEE ALSO are added here. Needs nothing beyond the Go toolchain; view the
// result with "man -l bin/pktpipe.1".
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: genman PATH-TO-PKTPIPE > pktpipe.1")
		os.Exit(2)
	}
	bin := os.Args[1]
	var help bytes.Buffer
	cmd := exec.Command(bin, "--help")
	cmd.Stdout, cmd.Stderr = &help, &help
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "genman: %s --help: %v\n", bin, err)
		os.Exit(1)
	}
	ver, err := exec.Command(bin, "version").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "genman: %s version: %v\n", bin, err)
		os.Exit(1)
	}
	if err := write(os.Stdout, help.String(), strings.TrimSpace(string(ver))); err != nil {
		fmt.Fprintln(os.Stderr, "genman:", err)
		os.Exit(1)
	}
}

// section is a titled part of the help text.
type section struct {
	title string
	lines []string
}

func split(help string) (name string, secs []section) {
	lines := strings.Split(strings.TrimRight(help, "\n"), "\n")
	name = strings.TrimSpace(lines[0])
	cur := section{title: "DESCRIPTION"}
	for _, l := range lines[1:] {
		t := strings.TrimSpace(l)
		if !strings.HasPrefix(l, " ") && strings.HasSuffix(t, ":") && !strings.Contains(t, " ") {
			secs = append(secs, cur)
			cur = section{title: strings.ToUpper(strings.TrimSuffix(t, ":"))}
			continue
		}
		cur.lines = append(cur.lines, l)
	}
	secs = append(secs, cur)
	return name, secs
}

// esc escapes text for roff.
func esc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

func write(w io.Writer, help, version string) error {
	name, secs := split(help)
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p(`.TH PKTPIPE 1 "" "%s" "User Commands"`, esc(version))
	p(".SH NAME")
	if i := strings.Index(name, " — "); i >= 0 {
		p(`pktpipe \- %s`, esc(name[i+len(" — "):]))
	} else {
		p(`pktpipe \- %s`, esc(name))
	}
	// "Usage:" holds the synopsis lines, then (after a blank line) the
	// paragraphs of the description.
	var synopsis, description []string
	for _, s := range secs {
		switch s.title {
		case "USAGE":
			inSynopsis := true
			for _, l := range s.lines {
				if strings.TrimSpace(l) == "" && len(synopsis) > 0 {
					inSynopsis = false
				}
				if inSynopsis {
					if t := strings.TrimSpace(l); t != "" {
						synopsis = append(synopsis, t)
					}
				} else {
					description = append(description, l)
				}
			}
		case "DESCRIPTION":
			description = append(description, s.lines...)
		}
	}
	p(".SH SYNOPSIS")
	p(".nf")
	for _, l := range synopsis {
		p("%s", esc(l))
	}
	p(".fi")
	p(".SH DESCRIPTION")
	paragraphs(&b, description)
	for _, s := range secs {
		switch s.title {
		case "USAGE", "DESCRIPTION":
		case "OPTIONS":
			p(".SH OPTIONS")
			options(&b, s.lines)
		default:
			p(".SH %s", esc(s.title))
			p(".nf")
			p(".RS")
			for _, l := range s.lines {
				if t := strings.TrimSpace(l); t != "" {
					p("%s", esc(t))
				}
			}
			p(".RE")
			p(".fi")
		}
	}
	p(".SH FILES")
	p(".TP")
	p(`.I /etc/pktpipe/pktpipe.yaml`)
	p(`Configuration read with \fB\-\-config\fR (example: pktpipe.yaml.example beside it or in /usr/local/share/doc/pktpipe).`)
	p(".TP")
	p(`.I /etc/systemd/system/pktpipe.service`)
	p(`systemd unit: a dynamic user with CAP_NET_RAW, CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN only.`)
	p(".SH SEE ALSO")
	p(`\fBtcpdump\fR(1), \fBsystemd.exec\fR(5); docs/operations.md and docs/schema.md in the source.`)
	_, err := io.WriteString(w, b.String())
	return err
}

// paragraphs writes text lines as roff paragraphs; indented lines are
// kept as they are.
func paragraphs(b *strings.Builder, lines []string) {
	open := false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case t == "":
			open = false
		case strings.HasPrefix(l, "  "):
			fmt.Fprintf(b, ".nf\n%s\n.fi\n", esc(t))
		default:
			if !open {
				b.WriteString(".PP\n")
				open = true
			}
			b.WriteString(esc(t) + "\n")
		}
	}
}

// options turns flag.PrintDefaults output into a .TP list:
//
//	-name type
//	  	usage (default x)
//	-x	usage
func options(b *strings.Builder, lines []string) {
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "  -"):
			head, usage, oneLine := strings.Cut(strings.TrimSpace(l), "\t")
			flagName, arg, _ := strings.Cut(head, " ")
			fmt.Fprintf(b, ".TP\n.B \\-%s", esc(strings.TrimPrefix(flagName, "-")))
			if arg != "" {
				fmt.Fprintf(b, " \" %s\"", esc(arg))
			}
			b.WriteString("\n")
			if oneLine {
				b.WriteString(esc(strings.TrimSpace(usage)) + "\n")
			}
		case strings.TrimSpace(l) != "":
			b.WriteString(esc(strings.TrimSpace(l)) + "\n")
		}
	}
}
