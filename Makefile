# SPDX-License-Identifier: GPL-2.0
#
# qcow2blk top-level build.
#
#   make                      module for every installed kernel + userspace
#   make module KVER=<ver>    module for one kernel (its headers installed)
#   make user                 qcow2ctl, engine library, test tools
#   make unit                 Check unit tests of the engine (ASan + UBSan)
#   make checkpatch           checkpatch --strict on kernel and engine sources
#   make test                 the whole suite (tests/run): unit, host, guest
#   make demo                 boot a guest, attach an image, mount it
#
# The module is built out of tree in build/<kver>/, one copy per kernel, so
# objects of different kernels never mix.

KVERS_INSTALLED := $(notdir $(patsubst %/build,%,$(wildcard /lib/modules/*/build)))
KVER ?=
KVERS := $(if $(KVER),$(KVER),$(KVERS_INSTALLED))
W ?= 1

BUILD := build
USER_BUILD := $(BUILD)/user

CC ?= gcc
USER_CFLAGS := -O2 -g -Wall -Wextra -Werror -std=gnu11 -D_GNU_SOURCE \
	-Ilib -Iuapi
SAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all -Wall -Wextra -Werror -std=gnu11 \
	-D_GNU_SOURCE -Ilib -Iuapi

LIB_SRCS := $(wildcard lib/*.c)
LIB_HDRS := $(wildcard lib/*.h) uapi/qcow2blk.h
KERNEL_SRCS := $(wildcard kernel/*.c kernel/*.h kernel/Kbuild)

.PHONY: all module user unit checkpatch test demo clean kernels

all: module user

# ---- kernel module ----------------------------------------------------

module:
	@test -n "$(KVERS)" || { echo "no kernel headers installed (scripts/setup.sh)"; exit 1; }
	@for v in $(KVERS); do \
		$(MAKE) --no-print-directory module-one KVER1=$$v || exit 1; \
	done

# Where a kernel's build tree is: /lib/modules/KVER/build, or KDIR (the
# newest headers are unpacked privately, see scripts/setup.sh).
kdir = $(or $(KDIR),/lib/modules/$(1)/build)

# A kernel built with another pahole than the one installed (the newest
# Debian headers, built with unstable's) gets its module without BTF: that
# pahole may not understand the kernel's options, and BTF is optional. The
# version kbuild compares is then the kernel's own, so it does not warn.
pahole_ver = $(shell pahole --version 2>/dev/null | sed 's/^v//; s/\.//')
kernel_pahole = $(shell sed -n 's/^CONFIG_PAHOLE_VERSION=//p' \
	$(call kdir,$(1))/include/config/auto.conf 2>/dev/null)
btf_args = $(if $(filter-out $(pahole_ver),$(call kernel_pahole,$(1))),\
	CONFIG_DEBUG_INFO_BTF_MODULES= PAHOLE_VERSION=$(call kernel_pahole,$(1)))

# Copy sources into build/<kver>/ and run kbuild there. cp -a keeps
# timestamps, so kbuild rebuilds only what changed; sources deleted upstream
# are pruned from the copy.
module-one:
	@d=$(BUILD)/$(KVER1); mkdir -p $$d/lib $$d/uapi; \
	for f in $$d/*.c $$d/*.h $$d/lib/*.c $$d/lib/*.h; do \
		[ -e "$$f" ] || continue; \
		case $$f in $$d/lib/*) src=lib/$${f##*/};; *) src=kernel/$${f##*/};; esac; \
		[ -e "$$src" ] || rm -f "$$f"; \
	done; \
	cp -a kernel/. $$d/ && cp -a lib/. $$d/lib/ && cp -a uapi/. $$d/uapi/
	$(MAKE) -C $(call kdir,$(KVER1)) M=$(CURDIR)/$(BUILD)/$(KVER1) \
		W=$(W) $(call btf_args,$(KVER1)) modules
	@echo "built $(BUILD)/$(KVER1)/qcow2blk.ko"

# ---- userspace ----------------------------------------------------------

user: $(USER_BUILD)/libqcow2.a qcow2ctl-bin tools

$(USER_BUILD)/lib/%.o: lib/%.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(USER_CFLAGS) -c -o $@ $<

$(USER_BUILD)/libqcow2.a: $(patsubst lib/%.c,$(USER_BUILD)/lib/%.o,$(LIB_SRCS))
	ar rcs $@ $^

# Sanitized copy of the engine for unit tests and tools under test.
$(USER_BUILD)/san/%.o: lib/%.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -c -o $@ $<

$(USER_BUILD)/libqcow2-san.a: $(patsubst lib/%.c,$(USER_BUILD)/san/%.o,$(LIB_SRCS))
	ar rcs $@ $^

qcow2ctl-bin: $(USER_BUILD)/libqcow2.a
	$(MAKE) -C qcow2ctl

tools: $(USER_BUILD)/libqcow2-san.a
	$(MAKE) -C tests/tools

unit: $(USER_BUILD)/libqcow2-san.a $(USER_BUILD)/libqcow2.a
	$(MAKE) -C tests/unit run
	$(MAKE) -C qcow2ctl check

# ---- checks -----------------------------------------------------------

checkpatch:
	bash scripts/checkpatch.sh

test:
	bash tests/run

demo:
	bash scripts/demo.sh

clean:
	rm -rf $(BUILD)
	$(MAKE) -C qcow2ctl clean 2>/dev/null || true
	$(MAKE) -C tests/tools clean 2>/dev/null || true
	$(MAKE) -C tests/unit clean 2>/dev/null || true
