// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2ctl column table. Cells are kept as text together with their column's
 * type; printing escapes them for the chosen mode: control characters as
 * \xNN everywhere, and in raw mode also blanks and backslashes so that every
 * line splits on single spaces. JSON escapes per RFC 8259.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"

struct qctl_table {
	const char *json_name;
	const struct qctl_column *cols;
	size_t nr_cols;
	char **cells;		/* nr_rows * nr_cols, NULL when absent */
	char **json;		/* same shape: QCTL_CELL_JSON values */
	size_t nr_rows;
	size_t cap_rows;
};

struct qctl_table *qctl_table_new(const char *json_name,
				  const struct qctl_column *cols,
				  size_t nr_cols)
{
	struct qctl_table *t;

	if (!nr_cols)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->json_name = json_name;
	t->cols = cols;
	t->nr_cols = nr_cols;
	return t;
}

void qctl_table_free(struct qctl_table *t)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->nr_rows * t->nr_cols; i++) {
		free(t->cells[i]);
		free(t->json[i]);
	}
	free(t->cells);
	free(t->json);
	free(t);
}

int qctl_table_add_row(struct qctl_table *t)
{
	char **cells, **json;
	size_t cap;

	if (t->nr_rows == t->cap_rows) {
		cap = t->cap_rows ? t->cap_rows * 2 : 8;
		cells = realloc(t->cells, cap * t->nr_cols * sizeof(*cells));
		if (!cells)
			return -ENOMEM;
		t->cells = cells;
		json = realloc(t->json, cap * t->nr_cols * sizeof(*json));
		if (!json)
			return -ENOMEM;
		t->json = json;
		t->cap_rows = cap;
	}
	memset(&t->cells[t->nr_rows * t->nr_cols], 0,
	       t->nr_cols * sizeof(*t->cells));
	memset(&t->json[t->nr_rows * t->nr_cols], 0,
	       t->nr_cols * sizeof(*t->json));
	t->nr_rows++;
	return 0;
}

static int qctl_table_set(struct qctl_table *t, size_t col,
			  enum qctl_cell_type type, const char *s)
{
	char **cell;
	char *copy;

	if (!t->nr_rows || col >= t->nr_cols || t->cols[col].type != type)
		return -EINVAL;
	copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	cell = &t->cells[(t->nr_rows - 1) * t->nr_cols + col];
	free(*cell);
	*cell = copy;
	return 0;
}

int qctl_table_set_str(struct qctl_table *t, size_t col, const char *s)
{
	return qctl_table_set(t, col, QCTL_CELL_STR, s);
}

int qctl_table_set_num(struct qctl_table *t, size_t col, __u64 v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu", v);
	return qctl_table_set(t, col, QCTL_CELL_NUM, buf);
}

int qctl_table_set_bool(struct qctl_table *t, size_t col, bool v)
{
	return qctl_table_set(t, col, QCTL_CELL_BOOL, v ? "1" : "0");
}

int qctl_table_set_json(struct qctl_table *t, size_t col, const char *json,
			const char *text)
{
	char **cell;
	char *copy;
	int ret;

	ret = qctl_table_set(t, col, QCTL_CELL_JSON, text);
	if (ret)
		return ret;
	copy = strdup(json);
	if (!copy)
		return -ENOMEM;
	cell = &t->json[(t->nr_rows - 1) * t->nr_cols + col];
	free(*cell);
	*cell = copy;
	return 0;
}

static bool qctl_needs_escape(unsigned char c, bool raw)
{
	if (c < 0x20 || c == 0x7f)
		return true;
	return raw && (c == ' ' || c == '\\');
}

/* @s escaped for a table cell, malloc()ed; "" for an absent cell. */
static char *qctl_escape(const char *s, bool raw)
{
	const unsigned char *p;
	char *out, *o;

	if (!s)
		return strdup("");
	out = malloc(strlen(s) * 4 + 1);
	if (!out)
		return NULL;
	for (p = (const unsigned char *)s, o = out; *p; p++) {
		if (qctl_needs_escape(*p, raw))
			o += sprintf(o, "\\x%02x", *p);
		else
			*o++ = *p;
	}
	*o = '\0';
	return out;
}

void qctl_json_put_string(FILE *out, const char *s)
{
	const unsigned char *p;

	fputc('"', out);
	for (p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(out, "\\u%04x", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

static void qctl_json_key(FILE *out, const char *name)
{
	const char *p;

	fputc('"', out);
	for (p = name; *p; p++)
		fputc(tolower((unsigned char)*p), out);
	fputs("\": ", out);
}

static void qctl_table_print_json(const struct qctl_table *t, FILE *out)
{
	const char *cell;
	size_t r, c;

	fputs("{\n   ", out);
	qctl_json_put_string(out, t->json_name);
	fputs(": [", out);
	for (r = 0; r < t->nr_rows; r++) {
		fputs(r ? ",\n      {\n" : "\n      {\n", out);
		for (c = 0; c < t->nr_cols; c++) {
			cell = t->cells[r * t->nr_cols + c];
			fputs("         ", out);
			qctl_json_key(out, t->cols[c].name);
			if (!cell)
				fputs("null", out);
			else if (t->cols[c].type == QCTL_CELL_JSON)
				fputs(t->json[r * t->nr_cols + c] ?: "null",
				      out);
			else if (t->cols[c].type == QCTL_CELL_NUM)
				fputs(cell, out);
			else if (t->cols[c].type == QCTL_CELL_BOOL)
				fputs(strcmp(cell, "0") ? "true" : "false",
				      out);
			else
				qctl_json_put_string(out, cell);
			fputs(c + 1 < t->nr_cols ? ",\n" : "\n", out);
		}
		fputs("      }", out);
	}
	fputs(t->nr_rows ? "\n   ]\n}\n" : "]\n}\n", out);
}

/*
 * One line of cells; @text[c] is cell c. Pretty lines carry no trailing
 * blanks, so empty cells at the end are left out; raw lines keep them, so
 * every line has the same number of fields.
 */
static void qctl_print_line(const struct qctl_table *t, FILE *out,
			    const char * const *text, const int *width,
			    bool raw)
{
	size_t n = t->nr_cols;
	size_t c;

	if (!raw)
		while (n > 1 && !text[n - 1][0])
			n--;
	for (c = 0; c < n; c++) {
		if (c)
			fputc(' ', out);
		if (t->cols[c].type == QCTL_CELL_NUM ||
		    t->cols[c].type == QCTL_CELL_BOOL)
			fprintf(out, "%*s", width[c], text[c]);
		else if (c + 1 == n)
			fputs(text[c], out);
		else
			fprintf(out, "%-*s", width[c], text[c]);
	}
	fputc('\n', out);
}

static int qctl_table_print_text(const struct qctl_table *t, FILE *out,
				 bool raw, bool headings)
{
	size_t nr = t->nr_rows * t->nr_cols;
	const char **names;
	char **text;
	int *width;
	size_t i, r, c;
	int ret = -ENOMEM;

	text = calloc(nr, sizeof(*text));
	width = calloc(t->nr_cols, sizeof(*width));
	names = calloc(t->nr_cols, sizeof(*names));
	if (!text || !width || !names)
		goto out_free;
	for (c = 0; c < t->nr_cols; c++)
		width[c] = raw ? 0 : strlen(t->cols[c].name);
	for (i = 0; i < nr; i++) {
		text[i] = qctl_escape(t->cells[i], raw);
		if (!text[i])
			goto out_free;
		c = i % t->nr_cols;
		if (!raw && (int)strlen(text[i]) > width[c])
			width[c] = strlen(text[i]);
	}

	if (headings) {
		for (c = 0; c < t->nr_cols; c++)
			names[c] = t->cols[c].name;
		qctl_print_line(t, out, names, width, raw);
	}
	for (r = 0; r < t->nr_rows; r++)
		qctl_print_line(t, out,
				(const char * const *)&text[r * t->nr_cols],
				width, raw);
	ret = 0;

out_free:
	if (text)
		for (i = 0; i < nr; i++)
			free(text[i]);
	free(text);
	free(names);
	free(width);
	return ret;
}

int qctl_table_print(const struct qctl_table *t, FILE *out,
		     enum qctl_table_mode mode, bool headings)
{
	int ret = 0;

	if (mode == QCTL_TABLE_JSON)
		qctl_table_print_json(t, out);
	else if (t->nr_rows)
		ret = qctl_table_print_text(t, out, mode == QCTL_TABLE_RAW,
					    headings);
	if (!ret && (fflush(out) || ferror(out)))
		ret = -EIO;
	return ret;
}
