package event

// TypeHTTP is the event_type of HTTP/1.x transaction records (stages/http).
const TypeHTTP Type = "http"

// HTTP is one HTTP/1.x transaction: a request and its response. Field
// names follow Suricata EVE's http object; empty fields are left out.
type HTTP struct {
	Header
	// AppProto is the flow's app_proto when the event was written, as
	// stages/appproto had named it ("" when it had not, or does not run).
	AppProto    string
	TxID        uint64 // tx_id: the transaction's index in its flow, from 0
	Hostname    string // Host header without its port
	Port        int    // http_port: the Host header's port, 0 when absent
	URL         string
	UserAgent   string
	XFF         string // X-Forwarded-For
	ContentType string // the response's Content-Type
	Referer     string // http_refer
	Method      string
	Protocol    string // the request's version, "HTTP/1.1" (the response's when no request was seen)
	Status      int    // 0: no response, or a status that is not a number
	// StatusString is a status that is not a number ("2XX"), as
	// Suricata's status_string.
	StatusString string
	Redirect     string // the response's Location
	Length       uint64 // response body bytes seen (after chunked framing)
}

func (*HTTP) Type() Type { return TypeHTTP }

func (e *HTTP) EncodeBody(w Writer) {
	optString(w, "app_proto", e.AppProto)
	w.Key("tx_id")
	w.Uint(e.TxID)
	w.Key("http")
	w.BeginObject()
	str := func(k, v string) {
		if v != "" {
			w.Key(k)
			w.String(v)
		}
	}
	str("hostname", e.Hostname)
	if e.Port != 0 {
		w.Key("http_port")
		w.Int(int64(e.Port))
	}
	str("url", e.URL)
	str("http_user_agent", e.UserAgent)
	str("xff", e.XFF)
	str("http_content_type", e.ContentType)
	str("http_refer", e.Referer)
	str("http_method", e.Method)
	str("protocol", e.Protocol)
	if e.Status != 0 {
		w.Key("status")
		w.Int(int64(e.Status))
	}
	str("status_string", e.StatusString)
	str("redirect", e.Redirect)
	w.Key("length")
	w.Uint(e.Length)
	w.EndObject()
}
