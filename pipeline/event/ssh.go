package event

// TypeSSH is the event_type of SSH records (stages/ssh).
const TypeSSH Type = "ssh"

// SSH is the record of one SSH connection's handshake: each side's
// identification banner and, from its KEXINIT, its HASSH (salesforce's
// HASSH: the MD5 of "kex;encryption;mac;compression" as the client offers
// them client-to-server, and as the server offers them server-to-client).
// Field names follow Suricata EVE's ssh object.
type SSH struct {
	Header
	// AppProto is the flow's app_proto when the event was written, as
	// stages/appproto had named it ("" when it had not, or does not run).
	AppProto       string
	Client, Server SSHHost
}

// SSHHost is one side: ssh.client or ssh.server.
type SSHHost struct {
	ProtoVersion    string // "2.0", "1.99"
	SoftwareVersion string // banner text after the version, up to a space
	HASSH           string // MD5 hex of HASSHString; "" when no KEXINIT was read
	HASSHString     string
}

func (*SSH) Type() Type { return TypeSSH }

func (e *SSH) EncodeBody(w Writer) {
	optString(w, "app_proto", e.AppProto)
	w.Key("ssh")
	w.BeginObject()
	for _, s := range [2]struct {
		key string
		h   *SSHHost
	}{{"client", &e.Client}, {"server", &e.Server}} {
		if s.h.ProtoVersion == "" && s.h.HASSH == "" {
			continue
		}
		w.Key(s.key)
		w.BeginObject()
		if s.h.ProtoVersion != "" {
			w.Key("proto_version")
			w.String(s.h.ProtoVersion)
			w.Key("software_version")
			w.String(s.h.SoftwareVersion)
		}
		if s.h.HASSH != "" {
			w.Key("hassh")
			w.BeginObject()
			w.Key("hash")
			w.String(s.h.HASSH)
			w.Key("string")
			w.String(s.h.HASSHString)
			w.EndObject()
		}
		w.EndObject()
	}
	w.EndObject()
}
