/*
 * gg_auth: Greengrass V2 client-device authorization for mosquitto 2.0 (plugin API version 5).
 *
 * Why: mosquitto alone cannot refuse a CONNECT whose client id differs from the certificate's thing name,
 * nor evaluate Greengrass device-group policies. This plugin does both, from a rules file compiled from
 * the deviceGroups policy by harness/core/authplugin/rules.py (the format is documented there and in
 * parse_rules() below).
 *
 * Identity: the thing name is the first Common Name of the client certificate, read here with
 * mosquitto_client_certificate(). The plugin does not trust the MQTT username: mosquitto 2.0 skips plugin
 * authentication altogether (no MOSQ_EVT_BASIC_AUTH) on a TLS listener with use_identity_as_username or
 * use_subject_as_username, so the broker must run with require_certificate true and WITHOUT those options;
 * the plugin then sets the username to the thing name itself. If it is deployed with
 * use_identity_as_username anyway, every publish and subscribe still re-checks the identity and the
 * connect policy, and a warning says CONNECTs are not being checked.
 *
 * Options (mosquitto.conf, after the `plugin` line):
 *   plugin_opt_rules <path>     rules file (required)
 *   plugin_opt_faults <list>    seeded defects, comma separated: no_client_id_check, no_acl,
 *                               allow_no_certificate
 *   plugin_opt_log all|deny     log every decision (default) or only denials
 *
 * Decisions are logged at MOSQ_LOG_INFO, one line each, resource last:
 *   gg_auth: <allow|deny> <connect|publish|subscribe> thing=<T> client=<C> reason=<R> resource=<resource>
 * with R one of group:<name>, fault:no_acl, client-id-mismatch, no-policy, no-certificate, no-thing-name.
 *
 * Build: -shared -fPIC, no libmosquitto: the mosquitto_* symbols resolve against the broker at load, and the
 * few OpenSSL functions below against the libcrypto the broker already has loaded (OpenSSL 1.1 and 3 share
 * this ABI), so no OpenSSL headers are needed when cross-compiling.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define GG_EXPORT __attribute__((visibility("default")))

/* ---- OpenSSL, declared rather than included (see above) ---------------------------------------- */
typedef struct x509_st X509;
typedef struct X509_name_st X509_NAME;
typedef struct X509_name_entry_st X509_NAME_ENTRY;
typedef struct asn1_string_st ASN1_STRING;
extern X509_NAME *X509_get_subject_name(const X509 *x);
extern int X509_NAME_get_index_by_NID(const X509_NAME *name, int nid, int lastpos);
extern X509_NAME_ENTRY *X509_NAME_get_entry(const X509_NAME *name, int loc);
extern ASN1_STRING *X509_NAME_ENTRY_get_data(const X509_NAME_ENTRY *ne);
extern const unsigned char *ASN1_STRING_get0_data(const ASN1_STRING *x);
extern int ASN1_STRING_length(const ASN1_STRING *x);
extern void X509_free(X509 *a);
#define GG_NID_COMMON_NAME 13

/* ---- rules ------------------------------------------------------------------------------------- */
#define RULES_HEADER "gg_auth_rules 1"
#define THING_VAR "${iot:Connection.Thing.ThingName}"
#define THING_VAR_LEN (sizeof(THING_VAR) - 1)
#define MAX_THING_NAME 256

enum gg_op { OP_CONNECT, OP_PUBLISH, OP_SUBSCRIBE, OP_COUNT };
static const char *const OP_NAMES[OP_COUNT] = {"connect", "publish", "subscribe"};
static const char *const RESOURCE_PREFIX[OP_COUNT] = {"mqtt:clientId:", "mqtt:topic:", "mqtt:topicfilter:"};

struct gg_term {
	char *name;
	bool prefix; /* name is a prefix (selection rule `thingName: name*`) rather than the whole name */
};

struct gg_clause { /* terms ANDed */
	struct gg_term *terms;
	size_t nterms;
};

struct gg_stmt {
	enum gg_op op;
	char *resource; /* glob: '*' matches any run of characters; THING_VAR is the client's thing name */
};

struct gg_group {
	char *name;
	struct gg_clause *clauses; /* ORed */
	size_t nclauses;
	struct gg_stmt *stmts;
	size_t nstmts;
};

struct gg_rules {
	struct gg_group *groups;
	size_t ngroups;
};

struct gg_state {
	mosquitto_plugin_id_t *id;
	struct gg_rules rules;
	bool no_client_id_check;
	bool no_acl;
	bool allow_no_certificate;
	bool log_allow;
	bool basic_auth_seen;
	bool warned_unchecked;
};

static void free_rules(struct gg_rules *r)
{
	for (size_t g = 0; g < r->ngroups; g++) {
		struct gg_group *grp = &r->groups[g];
		for (size_t c = 0; c < grp->nclauses; c++) {
			for (size_t t = 0; t < grp->clauses[c].nterms; t++) free(grp->clauses[c].terms[t].name);
			free(grp->clauses[c].terms);
		}
		for (size_t s = 0; s < grp->nstmts; s++) free(grp->stmts[s].resource);
		free(grp->clauses);
		free(grp->stmts);
		free(grp->name);
	}
	free(r->groups);
	r->groups = NULL;
	r->ngroups = 0;
}

/* Grow *arr (of *n elements of size sz) by one zeroed element; NULL on out of memory. */
static void *push(void *arr_ptr, size_t *n, size_t sz)
{
	void **arr = arr_ptr;
	void *grown = realloc(*arr, (*n + 1) * sz);
	if (!grown) return NULL;
	*arr = grown;
	memset((char *)grown + *n * sz, 0, sz);
	return (char *)grown + (*n)++ * sz;
}

static int fail(char *err, size_t errlen, const char *path, size_t lineno, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (lineno) snprintf(err, errlen, "rules file %s line %zu: %s", path, lineno, msg);
	else snprintf(err, errlen, "rules file %s: %s", path, msg);
	return -1;
}

/* Every "${" must start THING_VAR: an unknown policy variable is an error, not a literal. */
static bool variables_ok(const char *resource)
{
	for (const char *p = strstr(resource, "${"); p; p = strstr(p + 1, "${")) {
		if (strncmp(p, THING_VAR, THING_VAR_LEN) != 0) return false;
	}
	return true;
}

static int parse_match(struct gg_group *grp, char *rest, char *err, size_t errlen, const char *path,
		size_t lineno)
{
	struct gg_clause *clause = push(&grp->clauses, &grp->nclauses, sizeof *clause);
	if (!clause) return fail(err, errlen, path, lineno, "out of memory");
	char *save = NULL;
	for (char *tok = strtok_r(rest, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		bool prefix;
		const char *name;
		if (strncmp(tok, "exact:", 6) == 0) {
			prefix = false;
			name = tok + 6;
			if (!*name) return fail(err, errlen, path, lineno, "'exact:' needs a thing name");
		} else if (strncmp(tok, "prefix:", 7) == 0) {
			prefix = true;
			name = tok + 7;
		} else {
			return fail(err, errlen, path, lineno, "match term '%s' is neither exact:<name> nor prefix:<name>",
					tok);
		}
		struct gg_term *term = push(&clause->terms, &clause->nterms, sizeof *term);
		if (!term || !(term->name = strdup(name))) return fail(err, errlen, path, lineno, "out of memory");
		term->prefix = prefix;
	}
	if (clause->nterms == 0) return fail(err, errlen, path, lineno, "'match' needs at least one term");
	return 0;
}

static int parse_allow(struct gg_group *grp, char *rest, char *err, size_t errlen, const char *path,
		size_t lineno)
{
	char *space = strchr(rest, ' ');
	if (!space || !space[1]) return fail(err, errlen, path, lineno, "expected 'allow <operation> <resource>'");
	*space = '\0';
	int op = -1;
	for (int i = 0; i < OP_COUNT; i++) {
		if (strcmp(rest, OP_NAMES[i]) == 0) op = i;
	}
	if (op < 0) {
		return fail(err, errlen, path, lineno,
				"unknown operation '%s' (allowed: connect, publish, subscribe)", rest);
	}
	const char *resource = space + 1;
	if (!variables_ok(resource)) {
		return fail(err, errlen, path, lineno, "unknown policy variable in '%s' (supported: %s)", resource,
				THING_VAR);
	}
	struct gg_stmt *stmt = push(&grp->stmts, &grp->nstmts, sizeof *stmt);
	if (!stmt || !(stmt->resource = strdup(resource))) return fail(err, errlen, path, lineno, "out of memory");
	stmt->op = (enum gg_op)op;
	return 0;
}

/*
 * Rules file, one directive a line ('#' comments and empty lines ignored):
 *   gg_auth_rules 1                 first directive: format and version
 *   group <name>                    opens a device group (name = rest of line, for logs)
 *   match <term> [<term>...]        one AND clause; a group's match lines are ORed;
 *                                   term = exact:<thing name> | prefix:<thing name prefix>
 *   allow <operation> <resource>    operation = connect|publish|subscribe; resource = rest of line
 *   end                             closes the group
 * Anything else is an error naming the file and line, and the plugin refuses to load.
 */
static int parse_rules(const char *path, struct gg_rules *out, char *err, size_t errlen)
{
	FILE *fh = fopen(path, "r");
	if (!fh) return fail(err, errlen, path, 0, "cannot open: %s", strerror(errno));
	struct gg_rules r = {0};
	struct gg_group *grp = NULL;
	bool header = false;
	char *line = NULL;
	size_t cap = 0;
	size_t lineno = 0;
	ssize_t len;
	int rc = 0;

	while (rc == 0 && (len = getline(&line, &cap, fh)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
		if (len > 0 && line[len - 1] == '\r') line[--len] = '\0';
		if ((size_t)len != strlen(line)) {
			rc = fail(err, errlen, path, lineno, "NUL byte in line");
			break;
		}
		if (len == 0 || line[0] == '#') continue;
		if (!header) {
			if (strcmp(line, RULES_HEADER) != 0) {
				rc = fail(err, errlen, path, lineno, "expected '%s' as first directive, got '%.60s'",
						RULES_HEADER, line);
			}
			header = true;
			continue;
		}
		char *rest = strchr(line, ' ');
		if (rest) *rest++ = '\0';
		if (strcmp(line, "group") == 0) {
			if (grp) {
				rc = fail(err, errlen, path, lineno, "'group' inside group '%s' (missing 'end')", grp->name);
			} else if (!rest || !*rest) {
				rc = fail(err, errlen, path, lineno, "'group' needs a name");
			} else if (!(grp = push(&r.groups, &r.ngroups, sizeof *grp)) || !(grp->name = strdup(rest))) {
				rc = fail(err, errlen, path, lineno, "out of memory");
			}
		} else if (strcmp(line, "match") == 0 || strcmp(line, "allow") == 0) {
			if (!grp) {
				rc = fail(err, errlen, path, lineno, "'%s' outside a group", line);
			} else if (!rest || !*rest) {
				rc = fail(err, errlen, path, lineno, "'%s' needs arguments", line);
			} else if (line[0] == 'm') {
				rc = parse_match(grp, rest, err, errlen, path, lineno);
			} else {
				rc = parse_allow(grp, rest, err, errlen, path, lineno);
			}
		} else if (strcmp(line, "end") == 0) {
			if (!grp) rc = fail(err, errlen, path, lineno, "'end' outside a group");
			else if (rest) rc = fail(err, errlen, path, lineno, "'end' takes no arguments");
			grp = NULL;
		} else {
			rc = fail(err, errlen, path, lineno,
					"unknown directive '%.40s' (allowed: group, match, allow, end)", line);
		}
	}
	if (rc == 0 && ferror(fh)) rc = fail(err, errlen, path, lineno, "read error: %s", strerror(errno));
	if (rc == 0 && !header) rc = fail(err, errlen, path, 0, "empty (expected '%s')", RULES_HEADER);
	if (rc == 0 && grp) rc = fail(err, errlen, path, 0, "group '%s' has no 'end'", grp->name);
	free(line);
	fclose(fh);
	if (rc == 0) {
		*out = r;
	} else {
		free_rules(&r);
	}
	return rc;
}

/* ---- evaluation -------------------------------------------------------------------------------- */
static bool term_matches(const struct gg_term *t, const char *thing)
{
	size_t n = strlen(t->name);
	return t->prefix ? strncmp(thing, t->name, n) == 0 : strcmp(thing, t->name) == 0;
}

static bool group_selects(const struct gg_group *g, const char *thing)
{
	for (size_t c = 0; c < g->nclauses; c++) {
		bool all = true;
		for (size_t t = 0; all && t < g->clauses[c].nterms; t++) all = term_matches(&g->clauses[c].terms[t], thing);
		if (all) return true;
	}
	return false;
}

/*
 * Glob match of `text` against `pat`: '*' matches any run of characters (including '/'), THING_VAR matches
 * the thing name literally (a '*' in a thing name is not a wildcard). Greedy with backtracking to the last
 * star, which is exact for patterns whose only wildcard is '*'; linear space, no recursion.
 */
static bool resource_matches(const char *pat, const char *text, const char *thing)
{
	size_t thing_len = strlen(thing);
	const char *star_pat = NULL;
	const char *star_text = NULL;
	while (*text) {
		if (*pat == '*') {
			star_pat = ++pat;
			star_text = text;
			continue;
		}
		if (strncmp(pat, THING_VAR, THING_VAR_LEN) == 0) {
			if (strncmp(text, thing, thing_len) == 0) {
				pat += THING_VAR_LEN;
				text += thing_len;
				continue;
			}
		} else if (*pat && *pat == *text) {
			pat++;
			text++;
			continue;
		}
		if (!star_pat) return false;
		pat = star_pat;
		text = ++star_text;
	}
	while (*pat == '*') pat++;
	return *pat == '\0';
}

/* The first group that selects `thing` and allows `op` on `resource`, or NULL. */
static const char *authorize(const struct gg_rules *r, const char *thing, enum gg_op op, const char *resource)
{
	for (size_t g = 0; g < r->ngroups; g++) {
		const struct gg_group *grp = &r->groups[g];
		if (!group_selects(grp, thing)) continue;
		for (size_t s = 0; s < grp->nstmts; s++) {
			if (grp->stmts[s].op == op && resource_matches(grp->stmts[s].resource, resource, thing)) {
				return grp->name;
			}
		}
	}
	return NULL;
}

/* ---- identity and logging ---------------------------------------------------------------------- */
/* Copy the certificate's first Common Name into buf; returns the reason for failure, or NULL. */
static const char *thing_name(const struct mosquitto *client, char *buf, size_t buflen)
{
	X509 *cert = mosquitto_client_certificate(client);
	if (!cert) return "no-certificate";
	const char *reason = "no-thing-name";
	X509_NAME *name = X509_get_subject_name(cert);
	int idx = name ? X509_NAME_get_index_by_NID(name, GG_NID_COMMON_NAME, -1) : -1;
	X509_NAME_ENTRY *entry = idx >= 0 ? X509_NAME_get_entry(name, idx) : NULL;
	ASN1_STRING *data = entry ? X509_NAME_ENTRY_get_data(entry) : NULL;
	const unsigned char *bytes = data ? ASN1_STRING_get0_data(data) : NULL;
	int len = data ? ASN1_STRING_length(data) : -1;
	if (bytes && len > 0 && (size_t)len < buflen && memchr(bytes, '\0', (size_t)len) == NULL) {
		memcpy(buf, bytes, (size_t)len);
		buf[len] = '\0';
		reason = NULL;
	}
	X509_free(cert);
	return reason;
}

static void log_decision(const struct gg_state *st, bool allow, enum gg_op op, const char *thing,
		const char *client_id, const char *reason, const char *resource_tail)
{
	if (allow && !st->log_allow) return;
	mosquitto_log_printf(MOSQ_LOG_INFO, "gg_auth: %s %s thing=%s client=%s reason=%s resource=%s%s",
			allow ? "allow" : "deny", OP_NAMES[op], thing, client_id, reason, RESOURCE_PREFIX[op],
			resource_tail);
}

/*
 * The CONNECT decision: thing name from the certificate, client id == thing name (unless the
 * no_client_id_check fault is set), and mqtt:connect on mqtt:clientId:<id>. Returns the deny reason or NULL;
 * `via` gets the granting group.
 */
static const char *connect_decision(struct gg_state *st, const struct mosquitto *client, const char *client_id,
		char *thing, size_t thinglen, const char **via)
{
	const char *reason = thing_name(client, thing, thinglen);
	if (reason) {
		snprintf(thing, thinglen, "-");
		if (st->allow_no_certificate && strcmp(reason, "no-certificate") == 0) {
			*via = "fault:allow_no_certificate";
			return NULL;
		}
		return reason;
	}
	if (strcmp(client_id, thing) != 0) {
		if (!st->no_client_id_check) return "client-id-mismatch";
	}
	size_t need = strlen(RESOURCE_PREFIX[OP_CONNECT]) + strlen(client_id) + 1;
	char *resource = malloc(need);
	if (!resource) return "out-of-memory";
	snprintf(resource, need, "%s%s", RESOURCE_PREFIX[OP_CONNECT], client_id);
	*via = authorize(&st->rules, thing, OP_CONNECT, resource);
	free(resource);
	return *via ? NULL : "no-policy";
}

/* ---- callbacks --------------------------------------------------------------------------------- */
static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct gg_state *st = userdata;
	(void)event;
	st->basic_auth_seen = true;
	const char *client_id = mosquitto_client_id(ed->client);
	if (!client_id) client_id = "";
	char thing[MAX_THING_NAME];
	const char *via = NULL;
	const char *reason = connect_decision(st, ed->client, client_id, thing, sizeof thing, &via);
	bool certless = via && strcmp(via, "fault:allow_no_certificate") == 0;
	if (!reason && !certless && strcmp(client_id, thing) != 0) {
		mosquitto_log_printf(MOSQ_LOG_INFO,
				"gg_auth: fault no_client_id_check: accepting client=%s for thing=%s", client_id, thing);
	}
	if (!reason && !certless) {
		/* The username becomes the thing name, so broker logs and any ACL file see the identity. */
		int rc = mosquitto_set_username(ed->client, thing);
		if (rc != MOSQ_ERR_SUCCESS) reason = "set-username-failed";
	}
	char via_buf[300];
	snprintf(via_buf, sizeof via_buf, certless ? "%s" : "group:%s", via ? via : "");
	log_decision(st, reason == NULL, OP_CONNECT, thing, client_id, reason ? reason : via_buf, client_id);
	return reason ? MOSQ_ERR_AUTH : MOSQ_ERR_SUCCESS;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	struct gg_state *st = userdata;
	enum gg_op op;
	(void)event;
	switch (ed->access) {
	case MOSQ_ACL_SUBSCRIBE:
		op = OP_SUBSCRIBE;
		break;
	case MOSQ_ACL_WRITE:
		op = OP_PUBLISH;
		break;
	default:
		/* READ (delivery) and UNSUBSCRIBE: Greengrass authorizes at subscribe time. */
		return MOSQ_ERR_SUCCESS;
	}
	const char *client_id = mosquitto_client_id(ed->client);
	if (!client_id) client_id = "";
	const char *topic = ed->topic ? ed->topic : "";
	char thing[MAX_THING_NAME];
	if (!st->basic_auth_seen && !st->warned_unchecked) {
		st->warned_unchecked = true;
		mosquitto_log_printf(MOSQ_LOG_WARNING,
				"gg_auth: warning: client %s was never authenticated by gg_auth: mosquitto skips plugin "
				"authentication when use_identity_as_username or use_subject_as_username is set, so CONNECTs "
				"are not checked; remove them (the plugin reads the thing name from the certificate)",
				client_id);
	}
	/* Re-check the identity: it is all that stands if the broker skipped MOSQ_EVT_BASIC_AUTH. */
	const char *via = NULL;
	const char *reason = connect_decision(st, ed->client, client_id, thing, sizeof thing, &via);
	if (!reason) {
		if (st->no_acl) {
			via = "fault:no_acl";
			log_decision(st, true, op, thing, client_id, via, topic);
			return MOSQ_ERR_SUCCESS;
		}
		size_t need = strlen(RESOURCE_PREFIX[op]) + strlen(topic) + 1;
		char *resource = malloc(need);
		if (!resource) return MOSQ_ERR_NOMEM;
		snprintf(resource, need, "%s%s", RESOURCE_PREFIX[op], topic);
		via = authorize(&st->rules, thing, op, resource);
		free(resource);
		if (!via) reason = "no-policy";
	}
	char via_buf[300];
	snprintf(via_buf, sizeof via_buf, "group:%s", via ? via : "");
	log_decision(st, reason == NULL, op, thing, client_id, reason ? reason : via_buf, topic);
	return reason ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_SUCCESS;
}

/* ---- plugin entry points ----------------------------------------------------------------------- */
static int parse_faults(struct gg_state *st, const char *value, char *err, size_t errlen)
{
	char *copy = strdup(value);
	if (!copy) return -1;
	char *save = NULL;
	int rc = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ' || *tok == '\t') tok++;
		char *end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
		if (!*tok) continue;
		if (strcmp(tok, "no_client_id_check") == 0) {
			st->no_client_id_check = true;
		} else if (strcmp(tok, "no_acl") == 0) {
			st->no_acl = true;
		} else if (strcmp(tok, "allow_no_certificate") == 0) {
			st->allow_no_certificate = true;
		} else {
			snprintf(err, errlen, "plugin_opt_faults: unknown fault '%s' (allowed: no_client_id_check, no_acl, allow_no_certificate)",
					tok);
			rc = -1;
		}
	}
	free(copy);
	return rc;
}

GG_EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5) return 5;
	}
	return -1;
}

GG_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	struct gg_state *st = calloc(1, sizeof *st);
	if (!st) return MOSQ_ERR_NOMEM;
	st->id = identifier;
	st->log_allow = true;
	const char *rules_path = NULL;
	char err[512] = "";
	int bad = 0;
	for (int i = 0; i < option_count && !bad; i++) {
		const char *key = options[i].key;
		const char *value = options[i].value ? options[i].value : "";
		if (strcmp(key, "rules") == 0) {
			rules_path = value;
		} else if (strcmp(key, "faults") == 0) {
			bad = parse_faults(st, value, err, sizeof err);
		} else if (strcmp(key, "log") == 0) {
			if (strcmp(value, "all") == 0) {
				st->log_allow = true;
			} else if (strcmp(value, "deny") == 0) {
				st->log_allow = false;
			} else {
				snprintf(err, sizeof err, "plugin_opt_log: '%s' is not all or deny", value);
				bad = 1;
			}
		} else {
			snprintf(err, sizeof err, "unknown option plugin_opt_%s (allowed: rules, faults, log)", key);
			bad = 1;
		}
	}
	if (!bad && (!rules_path || !*rules_path)) {
		snprintf(err, sizeof err, "plugin_opt_rules <path> is required");
		bad = 1;
	}
	if (!bad && parse_rules(rules_path, &st->rules, err, sizeof err) != 0) bad = 1;
	if (bad) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "gg_auth: error: %s", err[0] ? err : "out of memory");
		free_rules(&st->rules);
		free(st);
		return MOSQ_ERR_INVAL;
	}
	int rc = mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, st);
	if (rc == MOSQ_ERR_SUCCESS) {
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, st);
		if (rc != MOSQ_ERR_SUCCESS) {
			mosquitto_callback_unregister(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
		}
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "gg_auth: error: cannot register callbacks (%d)", rc);
		free_rules(&st->rules);
		free(st);
		return rc;
	}
	mosquitto_log_printf(MOSQ_LOG_INFO, "gg_auth: loaded %zu device groups from %s; faults:%s%s%s",
			st->rules.ngroups, rules_path, st->no_client_id_check ? " no_client_id_check" : "",
			st->no_acl ? " no_acl" : "", (st->no_client_id_check || st->no_acl) ? "" : " none");
	*userdata = st;
	return MOSQ_ERR_SUCCESS;
}

GG_EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct gg_state *st = userdata;
	(void)options;
	(void)option_count;
	if (!st) return MOSQ_ERR_SUCCESS;
	mosquitto_callback_unregister(st->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(st->id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	free_rules(&st->rules);
	free(st);
	return MOSQ_ERR_SUCCESS;
}
