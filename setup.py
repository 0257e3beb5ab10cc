"""Distribution `govpki`: the province's certificate service and the applications built on it."""

from setuptools import find_packages, setup

setup(
    name="govpki",
    version="0.1.0",
    description="Province-wide government PKI: CA, RA, OCSP, TSA, signing, SSO, document exchange",
    python_requires=">=3.11",
    packages=find_packages(include=["core*", "hsm*", "policies*", "ca*", "ra*", "kmc*", "ocsp*",
                                    "signing*", "apps*", "govpki*"]),
    package_data={
        "policies": ["profiles/*.yaml", "ceremonies/*.yaml", "*.yaml", "*.md"],
        "ra": ["data/*.csv", "migrations/*.py", "web/templates/ra/*.html", "web/static/*"],
        "ocsp": ["migrations/*.py"],
        "core": ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py",
                 "web/static/*", "web/templates/ui/*.html"],
        "ca": ["migrations/*.py"],
        "kmc": ["migrations/*.py"],
        "apps": ["sso/migrations/*.py", "sso/templates/sso/*.html", "sso/static/*",
                 "exchange/migrations/*.py", "exchange/web/migrations/*.py",
                 "exchange/web/templates/exchange/*.html", "exchange/web/static/*"],
    },
    install_requires=[
        # The token-backed private key (hsm/pkcs11_store.py) relies on pyca calling
        # `sign()` on a Python subclass; tests/hsm/test_pyca_contract.py fails loudly if an
        # upgrade changes that, so the upper bound moves only with that test green.
        "cryptography>=44,<51",
        "asn1crypto>=1.5",
        "python-pkcs11>=0.10",
        "sqlalchemy>=2.0,<3",
        "alembic>=1.13",
        "click>=8.1",
        "flask>=3.1",  # ra/web sets the body limit per request (Flask 3.1)
        "pyyaml>=6.0",
        "openpyxl>=3.1",  # XLSX rosters (ra/roster_xlsx.py)
        "pyhanko[opentype,image-support]>=0.25",  # PAdES (signing/), CJK seal text
        "authlib>=1.3",  # OAuth 2.0 / OpenID Connect machinery (apps/sso)
        "joserfc>=1.0",  # the exchange pages check ID and logout tokens (apps/exchange/web)
        # ca/lint.py and ca/lint_document.py build pkilint's documents and dispatch its
        # validators themselves (tests/ca/test_lint*.py compare them with pkilint's own): a new
        # pkilint minor is taken on purpose, after those tests pass on it.
        "pkilint>=0.13,<0.14",
        "pyasn1-fasder>=0.1",  # the decoder pkilint uses, for the pieces ca/lint_document.py keeps
        "pyasn1-alt-modules>=0.4",
        "psycopg[binary]>=3.2",
        "granian>=2.5",
        "prometheus-client>=0.20",  # /metrics (govpki/metrics.py), multiprocess mode under granian
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "pyhanko-certvalidator>=0.26",
            "ruff>=0.6",
            "mypy>=1.10",
            "import-linter>=2.0",
            "types-PyYAML",
            "openapi-spec-validator>=0.7",  # validates /api/v1/openapi.json (tests)
            "playwright>=1.45",
            "requests>=2.31",  # authlib's OAuth2Session: the independent OIDC client (tests)
        ],
    },
    entry_points={"console_scripts": ["govpki=govpki.cli:main"]},
)
