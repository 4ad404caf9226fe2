"""The elements the package models (QM9's H, C, N, O, F): the one table that every one-hot
encoding (conformer features, de novo atom types), the bond table of the de novo metrics and the
QM9 reader use, in this order."""

from __future__ import annotations

__all__ = ["ELEMENTS", "ATOMIC_NUMBERS", "SYMBOL_OF", "NUMBER_OF", "EXTRA_ELEMENTS",
           "DRUGLIKE_ELEMENTS"]

#: element symbols, in the order of every one-hot encoding in the package
ELEMENTS = ("H", "C", "N", "O", "F")
#: their atomic numbers, same order
ATOMIC_NUMBERS = (1, 6, 7, 8, 9)
#: atomic number -> symbol
SYMBOL_OF = dict(zip(ATOMIC_NUMBERS, ELEMENTS))
#: symbol -> atomic number
NUMBER_OF = dict(zip(ELEMENTS, ATOMIC_NUMBERS))
#: elements a conformer model may add to its vocabulary (task option ``elements``), in the order
#: of their appended feature columns (:func:`~quotient_diffusion.chem.featurize.featurize`)
EXTRA_ELEMENTS = ("S", "Cl", "Br")
#: the drug-like vocabulary (the CCD set's elements, :mod:`quotient_diffusion.data.ccd`)
DRUGLIKE_ELEMENTS = ELEMENTS + EXTRA_ELEMENTS
