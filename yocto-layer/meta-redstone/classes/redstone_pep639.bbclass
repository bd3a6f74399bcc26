# Build a PEP 639 project with scarthgap's native build backends.
#
# Redstone's pyproject.toml and the sdists of python-can 4.6, tuf 7,
# securesystemslib 1.6 and zstandard 0.25 declare their licence the PEP 639
# way (license = "SPDX expression", license-files = [...]) and ask for
# setuptools >= 77 or an exact hatchling. Scarthgap ships setuptools 69.1.1
# and hatchling 1.21.1, which refuse both fields ("project.license must be
# valid exactly by one definition", "project.license-files must be a table").
#
# This class rewrites, in the unpacked source only, those two [project] keys
# into the older forms both backends accept and skips pypa/build's check of
# the build-system requirements (the versions above are what scarthgap has;
# the rewritten metadata is all they lacked). Nothing else changes: same
# code, same wheel contents, the licence file is still shipped
# (setuptools picks LICEN[CS]E* up by itself). Drop this class when the
# layer moves to a release whose setuptools is >= 77.

PEP517_BUILD_OPTS += "--skip-dependency-check"

# Text in, text out: the [project] keys "license" (a string) and
# "license-files" (a one-line array) in their pre-PEP 639 forms. A second
# run changes nothing. tests/integration/yocto runs this function on
# Redstone's own pyproject.toml.
def redstone_pep639_legacy(text, backend):
    import re
    out = []
    section = None
    for line in text.splitlines(keepends=True):
        header = re.match(r"\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?$", line)
        if header:
            section = header.group(1)
        elif section == "project":
            lic = re.match(r"(\s*)license\s*=\s*(\"[^\"]*\")\s*(#.*)?$", line)
            files = re.match(r"(\s*)license-files\s*=\s*(\[[^\]]*\])\s*(#.*)?$", line)
            if lic:
                line = "%slicense = {text = %s}\n" % (lic.group(1), lic.group(2))
            elif files and backend == "hatchling":
                line = "%slicense-files = {paths = %s}\n" % (files.group(1), files.group(2))
            elif files:
                line = ""
        out.append(line)
    return "".join(out)

python redstone_pep639_rewrite() {
    path = os.path.join(d.getVar("PEP517_SOURCE_PATH"), "pyproject.toml")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    backend = "hatchling" if "hatchling.build" in text else "setuptools"
    new = redstone_pep639_legacy(text, backend)
    if new != text:
        bb.note("redstone-pep639: %s rewritten for the %s backend of this release" % (path, backend))
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
}
redstone_pep639_rewrite[doc] = "Rewrites PEP 639 licence fields of pyproject.toml for the setuptools and hatchling of scarthgap"
do_configure[postfuncs] += "redstone_pep639_rewrite"
