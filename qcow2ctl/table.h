/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2ctl column table: one set of cells printed as an aligned table, as
 * raw space-separated lines, or as JSON, the way losetup does it. Knows
 * nothing about devices; the command layer defines the columns.
 */
#ifndef QCOW2CTL_TABLE_H
#define QCOW2CTL_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <linux/types.h>

enum qctl_cell_type {
	QCTL_CELL_STR,		/* JSON string */
	QCTL_CELL_NUM,		/* JSON number, right-aligned in tables */
	QCTL_CELL_BOOL,		/* "1"/"0" in tables, true/false in JSON */
	QCTL_CELL_JSON,		/* text in tables, a JSON value in JSON */
};

enum qctl_table_mode {
	QCTL_TABLE_PRETTY,	/* aligned columns */
	QCTL_TABLE_RAW,		/* one space between cells, blanks escaped */
	QCTL_TABLE_JSON,	/* { "<name>": [ { "<col>": value, ... } ] } */
};

struct qctl_column {
	const char *name;	/* heading, upper case: "NAME" */
	enum qctl_cell_type type;
};

struct qctl_table;

/**
 * qctl_table_new() - an empty table
 * @json_name: name of the JSON array ("qcowdevices")
 * @cols: column definitions, must outlive the table
 * @nr_cols: entries in @cols
 *
 * Return: the table or NULL (out of memory).
 */
struct qctl_table *qctl_table_new(const char *json_name,
				  const struct qctl_column *cols,
				  size_t nr_cols);
void qctl_table_free(struct qctl_table *t);

/**
 * qctl_table_add_row() - append a row whose cells are all absent
 * @t: table
 *
 * Return: 0 or -ENOMEM.
 */
int qctl_table_add_row(struct qctl_table *t);

/*
 * qctl_table_set_str(), _num(), _bool() - set cell @col of the last row
 *
 * A cell never set prints as an empty string in tables and as null in JSON.
 * Return: 0, -ENOMEM or -EINVAL (no row, bad column, value of the wrong
 * type).
 */
int qctl_table_set_str(struct qctl_table *t, size_t col, const char *s);
int qctl_table_set_num(struct qctl_table *t, size_t col, __u64 v);
int qctl_table_set_bool(struct qctl_table *t, size_t col, bool v);

/**
 * qctl_table_set_json() - set a QCTL_CELL_JSON cell of the last row
 * @t: table
 * @col: column
 * @json: a complete JSON value (array, object ...), printed as it is
 * @text: what pretty and raw tables print instead
 *
 * Return: 0, -ENOMEM or -EINVAL.
 */
int qctl_table_set_json(struct qctl_table *t, size_t col, const char *json,
			const char *text);

/**
 * qctl_json_put_string() - write @s as a JSON string, quoted and escaped
 * @out: stream
 * @s: NUL-terminated bytes
 */
void qctl_json_put_string(FILE *out, const char *s);

/**
 * qctl_table_print() - write the table to @out
 * @t: table
 * @out: stream
 * @mode: pretty, raw or JSON
 * @headings: print the heading line (pretty and raw modes)
 *
 * Pretty and raw modes print nothing at all for a table without rows.
 * Return: 0 or -EIO (write failed).
 */
int qctl_table_print(const struct qctl_table *t, FILE *out,
		     enum qctl_table_mode mode, bool headings);

#endif /* QCOW2CTL_TABLE_H */
