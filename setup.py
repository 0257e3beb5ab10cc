"""Distribution `govpki`: the province's certificate service and the applications built on it."""

from setuptools import find_packages, setup

setup(
    name="govpki",
    version="0.1.0",
    description="Province-wide government PKI: CA, RA, OCSP, TSA, signing, SSO, document exchange",
    python_requires=">=3.11",
    packages=find_packages(include=["core*", "hsm*", "policies*", "ca*", "ra*", "ocsp*",
                                    "signing*", "apps*", "govpki*"]),
    package_data={
        "policies": ["profiles/*.yaml", "ceremonies/*.yaml", "*.yaml", "*.md"],
        "ra": ["data/*.csv", "migrations/*.py"],
        "ocsp": ["migrations/*.py"],
        "core": ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py"],
        "ca": ["migrations/*.py"],
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
        "flask>=3.0",
        "pyyaml>=6.0",
        "openpyxl>=3.1",  # XLSX rosters (ra/roster_xlsx.py)
        "pkilint>=0.13",
        "psycopg[binary]>=3.2",
        "granian>=2.5",
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
        ],
    },
    entry_points={"console_scripts": ["govpki=govpki.cli:main"]},
)
