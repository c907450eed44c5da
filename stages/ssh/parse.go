package ssh

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
)

// parseBanner reads an identification line without its line end:
// "SSH-protoversion-softwareversion[ SP comments]" (RFC 4253 4.2). As
// Suricata, the software version stops at the first space.
func parseBanner(line []byte) (proto, sw string, ok bool) {
	rest, found := bytes.CutPrefix(line, []byte("SSH-"))
	if !found {
		return "", "", false
	}
	i := bytes.IndexByte(rest, '-')
	if i <= 0 {
		return "", "", false
	}
	proto = string(rest[:i])
	swb := rest[i+1:]
	if j := bytes.IndexAny(swb, " \r\n"); j >= 0 {
		swb = swb[:j]
	}
	return proto, string(swb), true
}

// kexInit holds the name-lists of a KEXINIT that HASSH reads.
type kexInit struct {
	kex, encCS, encSC, macCS, macSC, compCS, compSC []byte
}

// parseKexInit reads an SSH_MSG_KEXINIT payload (message code first): the
// 16-byte cookie, then ten name-lists.
func parseKexInit(p []byte) (k kexInit, ok bool) {
	if len(p) < 17 || p[0] != 20 {
		return k, false
	}
	p = p[17:]
	var lists [10][]byte
	for i := range lists {
		if len(p) < 4 {
			return k, false
		}
		n := uint64(p[0])<<24 | uint64(p[1])<<16 | uint64(p[2])<<8 | uint64(p[3])
		if n > uint64(len(p)-4) {
			return k, false
		}
		lists[i] = p[4 : 4+n]
		p = p[4+n:]
	}
	return kexInit{
		kex: lists[0], encCS: lists[2], encSC: lists[3],
		macCS: lists[4], macSC: lists[5], compCS: lists[6], compSC: lists[7],
	}, true
}

// hassh returns salesforce's HASSH (client: the client-to-server lists)
// or HASSHServer (server: server-to-client): the MD5 of
// "kex;encryption;mac;compression".
func (k *kexInit) hassh(client bool) (hash, s string) {
	enc, mac, comp := k.encSC, k.macSC, k.compSC
	if client {
		enc, mac, comp = k.encCS, k.macCS, k.compCS
	}
	b := make([]byte, 0, len(k.kex)+len(enc)+len(mac)+len(comp)+3)
	b = append(b, k.kex...)
	b = append(b, ';')
	b = append(b, enc...)
	b = append(b, ';')
	b = append(b, mac...)
	b = append(b, ';')
	b = append(b, comp...)
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:]), string(b)
}
