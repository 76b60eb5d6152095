"""Package layout: the top-level folders tasks/, training/ and synth/ install inside the
`finemed_eval` namespace (finemed_eval.tasks, ...), so nothing generic lands in site-packages.
A folder joins the distribution as soon as it has an __init__.py; no placeholders needed."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
NAMESPACED_FOLDERS = {
    "finemed_eval": "finemed_eval",
    "finemed_eval.tasks": "tasks",
    "finemed_eval.training": "training",
    "finemed_eval.synth": "synth",
}

package_dir: dict[str, str] = {}
packages: list[str] = []
for package, folder in NAMESPACED_FOLDERS.items():
    if not (ROOT / folder / "__init__.py").is_file():
        continue
    package_dir[package] = folder
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(folder) if f"{package}.{sub}" not in NAMESPACED_FOLDERS]

setup(
    package_dir=package_dir,
    packages=packages,
    package_data={
        "finemed_eval": ["demo/*", "leaderboard/*.json", "leaderboard/*.yaml", "leaderboard/templates/*", "leaderboard/static/*"],
        # Task folders are read by lm-eval from disk (YAML + utils.py), not imported as packages.
        "finemed_eval.tasks": ["**/*.yaml", "**/*.py", "**/*_yaml"],
        "finemed_eval.training": ["**/*.yaml", "**/*.json"],
        "finemed_eval.synth": ["**/*.yaml", "**/*.json", "**/*.txt"],
    },
)
